"""What the distributions ship besides code: the licence the metadata declares."""

from __future__ import annotations

import tomllib

from tests.conftest import REPO


def test_license_file_is_the_apache_2_license_the_metadata_declares():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert project["project"]["license"] == "Apache-2.0"
    # The sdist lists it explicitly (anchored to the top); the wheel takes it by hatchling's default
    # license-files glob (LICEN[CS]E*). tests/packaging checks both artifacts carry it, and NOTICE.
    assert "/LICENSE" in project["tool"]["hatch"]["build"]["targets"]["sdist"]["include"]
    text = (REPO / "LICENSE").read_text()
    words = text.split()
    assert words[:5] == ["Apache", "License", "Version", "2.0,", "January"]
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
    assert "END OF TERMS AND CONDITIONS" in text
    assert "9. Accepting Warranty or Additional Liability." in text
    assert len(words) > 1500  # the whole text, not a stub pointing at the web page
