"""Keys podman reads under another spelling are refused, the way Go's encoding/json folds them.

Go matches a JSON key to a struct field case-insensitively with Unicode simple folding, whose
orbits reach past ASCII in two places: U+017F LATIN SMALL LETTER LONG S folds with s/S, and
U+212A KELVIN SIGN with k/K. So podman reads "ſtarting" as Starting; podman-emu, which reads keys
by name, would miss it (and think a starting machine stopped). The oracle below spells every
podman key in every way Go folds to it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from podman_emu.errors import ConfigInvalid
from podman_emu.podman.layout import PODMAN_KEYS, refuse_case_variants
from podman_emu.podman.schema import validate_machine
from testing.fixtures import load_fixture

# Go's unicode.SimpleFold orbits of the letters in podman's keys (tables.go caseOrbit + ASCII).
_ORBITS = {"k": "kK\u212a", "s": "sS\u017f"}


def _orbit(char: str) -> str:
    if char.lower() in _ORBITS:
        return _ORBITS[char.lower()]
    return char.lower() + char.upper() if char.isalpha() else char


@st.composite
def go_folded_variant(draw: st.DrawFn) -> tuple[str, str]:
    key = draw(st.sampled_from(sorted(PODMAN_KEYS)))
    variant = "".join(draw(st.sampled_from(_orbit(char))) for char in key)
    return key, variant


@given(go_folded_variant())
def test_every_spelling_go_folds_to_a_podman_key_is_refused(pair: tuple[str, str]) -> None:
    key, variant = pair
    content = load_fixture("podman-4.9-linux-amd64.json")
    if variant == key:
        refuse_case_variants(Path("m.json"), content)  # podman's own spelling passes
        return
    content[variant] = content.get(key, True)
    with pytest.raises(ConfigInvalid, match="spelled differently"):
        refuse_case_variants(Path("m.json"), content)


@pytest.mark.parametrize("variant", ["\u017ftarting", "STARTING", "Di\u017fkSize", "Mount\u017f"])
def test_the_running_check_cannot_be_fooled_by_a_folded_key(variant: str) -> None:
    content = load_fixture("podman-4.9-linux-amd64.json")
    content[variant] = True if "tart" in variant.lower() else content.get("DiskSize")
    with pytest.raises(ConfigInvalid, match=repr(variant).strip("'")):
        validate_machine(Path("m.json"), content)
