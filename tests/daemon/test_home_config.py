"""HOME/config.toml: what `peerbackup up` reads when the command line does not say."""

from __future__ import annotations

from pathlib import Path

import pytest

from peerbackup.daemon.config import load_config
from peerbackup.errors import UsageError
from tests.daemon.harness import Office


def test_a_missing_file_is_no_config(tmp_path: Path) -> None:
    assert load_config(tmp_path).storage_quota is None


def test_every_key_is_read(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(
        'listen = "127.0.0.1:7000"\npeers = ["10.0.0.2:7420"]\nmdns = false\nmdns_interface = "127.0.0.1"\n'
        'storage_quota = "200G"\nrestore_root = "/srv/r"\nmetrics_listen = "127.0.0.1:9742"\nlimit_upload = "10M"\n'
        '[settings]\nrepair_interval = "30m"\nheartbeat = 1\n')
    conf = load_config(tmp_path)
    assert (conf.listen, conf.peers, conf.mdns, conf.mdns_interface, conf.storage_quota) == (
        "127.0.0.1:7000", ["10.0.0.2:7420"], False, "127.0.0.1", "200G")
    assert (conf.restore_root, conf.metrics_listen, conf.limit_upload) == ("/srv/r", "127.0.0.1:9742", "10M")
    assert conf.settings == ["repair_interval=30m", "heartbeat=1"]


@pytest.mark.parametrize(("text", "message"), [
    ("storage_qouta = '1G'\n", "unknown key 'storage_qouta'"),
    ("peers = '10.0.0.2:7420'\n", "peers has the wrong type"),
    ("peers = [7420]\n", "list of"),
    ("[settings]\nheartbeat = true\n", "durations"),
    ("listen = \n", "cannot read"),
])
def test_mistakes_are_named(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "config.toml").write_text(text)
    with pytest.raises(UsageError, match=message) as info:
        load_config(tmp_path)
    assert "config.toml" in str(info.value)


def test_up_takes_the_quota_from_the_home_config(office: Office) -> None:
    a = office.init("alpha")
    (a.home / "config.toml").write_text('storage_quota = "5M"\nlimit_upload = "2M"\n'
                                        '[settings]\nrepair_interval = "2h"\n')
    for bad, why in (("0", "more than 0"), ("fast", "is not a size")):
        res = office.cli("up", "--home", str(a.home), "--no-mdns", "--limit-upload", bad, check=False)
        assert res.rc == 2 and why in res.err, res.err
    office.start(a, mdns=False)
    out = office.cli("storage", "--json", "--home", str(a.home)).out
    assert '"quota": 5242880' in out
    assert a.status()["limit_upload"] == 2 * 1024 * 1024
    (a.home / "config.toml").write_text('storage_qouta = "5M"\n')
    res = office.cli("up", "--home", str(a.home), "--no-mdns", check=False)
    assert res.rc == 2 and "unknown key 'storage_qouta'" in res.err
