"""multigateway's settings: flags, the YAML file, and errors that name the setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from multigres.gateway.config import ConfigError, load


def test_pooler_mux_defaults_on_and_takes_on_off(tmp_path: Path) -> None:
    assert load([]).pooler_mux is True
    assert load(["--pooler-mux", "off"]).pooler_mux is False
    for word, want in (("false", False), ("no", False), ("on", True), ("yes", True)):
        f = tmp_path / f"{word}.yaml"
        f.write_text(f"pooler_mux: {word}\n")  # YAML's own booleans, and words
        assert load(["--config", str(f)]).pooler_mux is want
    # The flag wins over the file.
    f = tmp_path / "off.yaml"
    f.write_text("pooler_mux: off\n")
    assert load(["--config", str(f), "--pooler-mux", "on"]).pooler_mux is True


def test_a_bad_pooler_mux_value_names_the_setting(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("pooler_mux: sometimes\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: pooler_mux: expected on or off, "
                                          r"got 'sometimes'"):
        load(["--config", str(f)])
    with pytest.raises(SystemExit):
        load(["--pooler-mux", "maybe"])  # argparse's own choices error
