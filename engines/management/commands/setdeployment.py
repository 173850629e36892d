from django.core.management.base import BaseCommand, CommandError

from engines.models import Deployment, ServedModel
from tenants.selectors import organization_get_by_ref


class Command(BaseCommand):
    help = (
        "Map an Azure-style deployment name of an organization to a model "
        "(/openai/deployments/{name}/responses, or 'model' on the other Azure forms); "
        "--delete removes it, --list shows the organization's deployments."
    )

    def add_arguments(self, parser):
        parser.add_argument("org", help="organization public id or slug")
        parser.add_argument("name", nargs="?", help="deployment name")
        parser.add_argument("model", nargs="?", help="public model name it stands for")
        parser.add_argument("--delete", action="store_true")
        parser.add_argument("--list", action="store_true")

    def handle(self, *args, org: str, name, model, delete: bool, list: bool, **options):  # noqa: A002
        organization = organization_get_by_ref(ref=org)
        if organization is None:
            raise CommandError(f"No organization {org!r}.")
        if list:
            for deployment in Deployment.objects.filter(organization=organization).select_related(
                "model"
            ):
                self.stdout.write(f"{deployment.name}\t{deployment.model.name}")
            return
        if not name:
            raise CommandError("Give a deployment name (or --list).")
        if delete:
            deleted, _ = Deployment.objects.filter(organization=organization, name=name).delete()
            if not deleted:
                raise CommandError(f"No deployment {name!r} in {organization.slug}.")
            self.stdout.write(f"Deleted deployment {name}.")
            return
        served = ServedModel.objects.filter(name=model).first() if model else None
        if served is None:
            raise CommandError(f"No model {model!r}; see `manage.py syncmodels` or the admin.")
        Deployment.objects.update_or_create(
            organization=organization, name=name, defaults={"model": served}
        )
        self.stdout.write(f"Deployment {name} of {organization.name} now serves {served.name}.")
