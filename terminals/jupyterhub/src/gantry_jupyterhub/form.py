"""The spawn options form, built from Gantry's sites, and reading it back."""

from __future__ import annotations

import html
from collections.abc import Iterable
from typing import Any

import gantry


def _flavor(flavor: gantry.Flavor) -> str:
    cap = flavor.capacity
    text = f"{flavor.name}: {cap.cpus} CPUs, {cap.memory_bytes / 2**30:.0f} GiB"
    if cap.gpus:
        text += f", {cap.gpus} GPUs"
    if flavor.price_per_hour:
        text += f", {flavor.price_per_hour:.4g} {flavor.currency}/h"
    if not flavor.available:
        text += f" (unavailable: {flavor.unavailable_reason})"
    return text


def options_form(sites: Iterable[gantry.Site], chosen: dict[str, Any]) -> str:
    """HTML for the spawn page: a site (its flavors shown), CPUs, memory, GPUs, walltime."""
    rows = ['<option value="">any site (Gantry chooses)</option>']
    for site in sites:
        if not site.healthy:
            continue
        flavors = "; ".join(_flavor(f) for f in site.flavors)
        selected = " selected" if site.name == chosen.get("site") else ""
        label = html.escape(f"{site.name} ({site.provider}) — {flavors}")
        rows.append(f'<option value="{html.escape(site.name)}"{selected}>{label}</option>')

    def field(name: str, label: str, kind: str) -> str:
        value = html.escape(str(chosen.get(name, "")))
        return (
            f'<label for="gantry-{name}">{label}</label>'
            f'<input class="form-control" id="gantry-{name}" name="{name}" type="{kind}"'
            f' value="{value}"/>'
        )

    return "\n".join(
        [
            '<label for="gantry-site">Site</label>',
            f'<select class="form-control" id="gantry-site" name="site">{"".join(rows)}</select>',
            field("cpus", "CPUs", "number"),
            field("memory", "Memory (e.g. 4G)", "text"),
            field("gpus", "GPUs", "number"),
            field("walltime", "Walltime (e.g. 8h, 1-00:00:00)", "text"),
        ]
    )


_FIELDS = {"site": str, "cpus": int, "memory": str, "gpus": int, "walltime": str}


def user_options(form_data: dict[str, list[str]]) -> dict[str, Any]:
    """The form's answer as user_options; Gantry checks the values when it gets the job."""
    options: dict[str, Any] = {}
    for key, values in form_data.items():
        if key not in _FIELDS:
            # A field of a form an admin added: theirs to read (`user_options`).
            options[key] = values[0] if len(values) == 1 else values
            continue
        value = (values[0] if values else "").strip()
        if not value:
            continue
        try:
            options[key] = _FIELDS[key](value)
        except ValueError:
            raise ValueError(f"{key} must be a whole number, not {value!r}") from None
    return options
