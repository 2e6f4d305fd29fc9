"""The demo seed's one rule: never collide with, nor overwrite, what an admin changed.

`Seeder.ensure(key, Model, lookup=..., values=...)` brings one demo row to the demo's
values, remembering in a SeededRow what it wrote:

- no row yet: it is created, unless a row the seed did not make holds one of its unique
  values (an image renamed to "Debian 12"): then it is skipped, and the seed says so;
- a row found by `lookup` that the seed has no record of is taken as the seed's only when
  it holds exactly the demo's values (a database seeded before records were kept);
  otherwise it is someone else's and left alone;
- a row the seed made: each field is written only while it still holds what the seed
  last wrote there. A field an admin changed (a plan's price, a plan deactivated, an image
  renamed) is left as the admin set it, now and in every later run, and the seed says so;
- a row the seed made that was deleted is not made again.

Every skip and kept edit is collected in `notes`, which seed_demo prints.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, models, transaction

from .models import SeededRow

M = TypeVar("M", bound=models.Model)


def plain(value: Any) -> Any:
    """A value as stored in SeededRow.values (JSON: Decimal and dates as strings)."""
    return json.loads(json.dumps(value, cls=DjangoJSONEncoder))


class Seeder:
    def __init__(self) -> None:
        self.notes: list[str] = []

    def note(self, line: str) -> None:
        if line not in self.notes:
            self.notes.append(line)

    def seeded(self, key: str, model: type[M]) -> M | None:
        """The row the seed made under `key`, if it still exists."""
        record = SeededRow.objects.filter(key=key).first()
        if record is None:
            return None
        return model._default_manager.filter(pk=record.object_id).first()

    def ensure(
        self,
        key: str,
        model: type[M],
        *,
        lookup: dict[str, Any],
        values: dict[str, Any],
        create_only: dict[str, Any] | None = None,
        create: bool = True,
    ) -> M | None:
        label = f"{model._meta.verbose_name} {key.split(':', 1)[-1]!r}"
        record = SeededRow.objects.filter(key=key).first()
        if record is not None:
            obj = model._default_manager.filter(pk=record.object_id).first()
            if obj is None:
                self.note(f"skipped {label}: it was deleted; the seed does not make it again")
                return None
            return self._update(record, obj, values, label)
        obj = model._default_manager.filter(**lookup).first()
        if obj is not None:
            differs = [f for f, v in values.items() if plain(getattr(obj, f)) != plain(v)]
            if differs:
                self.note(
                    f"skipped {label}: {model._meta.verbose_name} #{obj.pk} ({obj}) was not "
                    f"made by the seed or was changed since ({', '.join(differs)}); left alone"
                )
                return None
            self._record(key, obj, values, [])
            return obj
        if not create:
            return None
        return self._create(key, model, {**values, **(create_only or {})}, label)

    # --- the cases -----------------------------------------------------------------------
    def _create(self, key: str, model: type[M], values: dict[str, Any], label: str) -> M | None:
        obj = model(**values)
        clash = self._clash(obj, values)
        if clash:
            self.note(f"skipped {label}: {clash}")
            return None
        try:
            with transaction.atomic():
                obj.full_clean(validate_unique=False, validate_constraints=False)
                obj.save()
        except (IntegrityError, ValidationError) as exc:
            self.note(f"skipped {label}: {exc}")
            return None
        self._record(key, obj, values, [])
        return obj

    def _update(self, record: SeededRow, obj: M, values: dict[str, Any], label: str) -> M:
        stored: dict[str, Any] = dict(record.values)
        edited = set(record.edited)
        changes: dict[str, Any] = {}
        kept: list[str] = []
        for field, want in values.items():
            have = plain(getattr(obj, field))
            if field not in edited:
                ours = have == stored[field] if field in stored else have == plain(want)
                if ours:
                    if have != plain(want):
                        changes[field] = want
                    continue
                edited.add(field)
                stored.pop(field, None)
            if have != plain(want):
                kept.append(f"{field} {have!r} (the demo's: {plain(want)!r})")
        if changes:
            problem = self._write(obj, changes)
            if problem:
                self.note(f"did not update {label}: {problem}")
                changes = {}
        stored.update({field: plain(value) for field, value in changes.items()})
        record.values, record.edited = stored, sorted(edited)
        record.save(update_fields=["values", "edited", "updated_at"])
        if kept:
            self.note(f"kept {label} as an admin changed it: {', '.join(kept)}")
        return obj

    def _write(self, obj: models.Model, changes: dict[str, Any]) -> str:
        before = {field: getattr(obj, field) for field in changes}
        for field, value in changes.items():
            setattr(obj, field, value)
        clash = self._clash(obj, changes)
        try:
            if clash:
                raise ValidationError(clash)
            with transaction.atomic():
                obj.full_clean(validate_unique=False, validate_constraints=False)
                obj.save()
        except (IntegrityError, ValidationError) as exc:
            for field, value in before.items():
                setattr(obj, field, value)
            return clash or str(exc)
        return ""

    def _clash(self, obj: models.Model, values: dict[str, Any]) -> str:
        """Another row holding one of these unique values."""
        model = type(obj)
        for field in model._meta.concrete_fields:
            if not field.unique or field.primary_key or field.attname not in values:
                continue
            value = getattr(obj, field.attname)
            other = model._default_manager.filter(**{field.attname: value}).exclude(pk=obj.pk)
            found = other.first()
            if found is not None:
                return (
                    f"{model._meta.verbose_name} #{found.pk} ({found}) already has the "
                    f"{field.verbose_name} {value!r}"
                )
        return ""

    def _record(self, key: str, obj: models.Model, values: dict[str, Any], edited: list) -> None:
        SeededRow.objects.update_or_create(
            key=key,
            defaults={
                "model": obj._meta.label_lower,
                "object_id": obj.pk,
                "values": {field: plain(value) for field, value in values.items()},
                "edited": edited,
            },
        )
