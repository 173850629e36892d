from __future__ import annotations

from django.core.management.base import BaseCommand

from responses.services.retention import responses_purge


class Command(BaseCommand):
    help = (
        "Delete stored responses older than their organization's retention, sessions that "
        "expired or were cancelled longer ago than that, and conversations untouched for that "
        "long. Beat also runs this hourly."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="Only count what would be deleted."
        )

    def handle(self, *args, dry_run: bool = False, **options) -> None:
        report = responses_purge(dry_run=dry_run)
        verb = "Would delete" if dry_run else "Deleted"
        self.stdout.write(
            f"{verb} {report.responses} responses, {report.sessions} sessions and "
            f"{report.conversations} conversations."
        )
