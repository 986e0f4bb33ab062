"""The portal's typed form for submitting a run of a stored pipeline: one field per pipeline
parameter, of its type, with its default."""

from __future__ import annotations

from typing import Any

from django import forms

from runs.services import EXPERIMENT_NAME_MAX

PARAM_PREFIX = "param_"
BOOL_CHOICES = [("true", "true"), ("false", "false")]


def field_name(parameter: str) -> str:
    return f"{PARAM_PREFIX}{parameter}"


class SubmitRunForm(forms.Form):
    experiment_name = forms.CharField(
        max_length=EXPERIMENT_NAME_MAX,
        help_text="Runs are grouped by experiment; a new name starts a new one.",
    )
    tags = forms.CharField(
        required=False,
        max_length=2000,
        help_text="Optional, comma-separated key=value pairs.",
    )
    regenerate_outputs = forms.BooleanField(
        required=False, help_text="Run every step, reusing nothing."
    )
    continue_on_step_failure = forms.BooleanField(
        required=False, help_text="Keep running the steps that do not depend on a failed one."
    )

    def __init__(self, *args: Any, parameters: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.parameters = parameters
        for name, spec in sorted(parameters.items()):
            kind = spec.get("type") if isinstance(spec, dict) else None
            default = spec.get("default") if isinstance(spec, dict) else None
            required = default is None
            label = f"{name} ({kind})"
            field: forms.Field
            if kind == "int":
                field = forms.IntegerField(label=label, required=required, initial=default)
            elif kind == "float":
                # A text box: a number input's default step would refuse 0.75 in the browser.
                field = forms.FloatField(
                    label=label, required=required, initial=default, widget=forms.TextInput
                )
            elif kind == "bool":
                field = forms.ChoiceField(
                    label=label,
                    choices=BOOL_CHOICES,
                    initial="true" if default else "false",
                    required=True,
                )
            elif kind == "datapath":
                initial = (
                    f"{default['datastore']}:{default['path']}" if isinstance(default, dict) else ""
                )
                field = forms.CharField(
                    label=label,
                    required=required,
                    initial=initial,
                    help_text="datastore:path, e.g. workspaceblobstore:raw/2026-11/",
                )
            else:
                field = forms.CharField(label=label, required=required, initial=default)
            self.fields[field_name(name)] = field

    def clean_tags(self) -> dict[str, str]:
        tags: dict[str, str] = {}
        for pair in (self.cleaned_data.get("tags") or "").split(","):
            if not pair.strip():
                continue
            key, _, value = pair.partition("=")
            if not key.strip():
                raise forms.ValidationError(f"{pair.strip()!r}: write key=value.")
            tags[key.strip()] = value.strip()
        return tags

    def parameter_values(self) -> dict[str, Any]:
        """The submitted values, typed; empty optional fields fall back to the defaults."""
        values: dict[str, Any] = {}
        for name, spec in self.parameters.items():
            value = self.cleaned_data.get(field_name(name))
            if value is None or value == "":
                continue
            kind = spec.get("type") if isinstance(spec, dict) else None
            if kind == "bool":
                value = value == "true"
            elif kind == "datapath":
                datastore, sep, path = str(value).partition(":")
                if not sep:
                    self.add_error(field_name(name), "Write datastore:path.")
                    continue
                value = {"datastore": datastore.strip(), "path": path.strip()}
            values[name] = value
        return values
