from typing import Any

from django.core.management.base import BaseCommand

from accounts.services import rotate_field_encryption


class Command(BaseCommand):
    help = (
        "Re-encrypt stored exchange secrets under the first FIELD_ENCRYPTION_KEY. "
        "Rotation: prepend the new key (NEW,OLD), run this, then remove OLD."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        count = rotate_field_encryption()
        self.stdout.write(self.style.SUCCESS(f"Re-encrypted secrets of {count} account(s)."))
