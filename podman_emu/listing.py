"""`podman-emu list`, kept free of typer so the console entry point can serve it directly."""

from __future__ import annotations

from podman_emu import locations, render
from podman_emu.inventory import list_machines


def print_machine_list(as_json: bool) -> None:
    rows = list_machines()
    if as_json:
        render.print_json(rows)
        return
    if not rows:
        render.out().print(f"No machines in {locations.podman_config_dir()}")
        return
    render.out().print(
        render.table(
            ["NAME", "EMULATION", "STATE", "PODMAN", "CPUS", "MEMORY", "CPU MODEL"],
            (
                [row["name"], "error: " + row["error"], "", "", "", "", ""]
                if "error" in row
                else [
                    row["name"],
                    row["emulation"],
                    row["state"] + (f" ({row['boot_stage']})" if row.get("boot_stage") else ""),
                    row["podman"],
                    row["cpus"],
                    f"{row['memory_mib']} MiB",
                    row["cpu"] or "",
                ]
                for row in rows
            ),
        )
    )
