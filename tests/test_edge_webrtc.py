"""The edge's configuration with and without browsers (appliance/edge/kamailio.py
``render_config``, appliance/edge/rtpengine.py), checked by Kamailio's own parser
(``kamailio -c``) without starting anything."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from appliance.edge.kamailio import EdgeConfig, render_config
from appliance.edge.rtpengine import RtpengineConfig

WEBRTC_MODULES = ("websocket.so", "xhttp.so", "rtpengine.so")


def active_lines(text: str) -> list[str]:
    """The lines Kamailio's preprocessor keeps (``#!ifdef NAME`` blocks of defined names)."""
    defined = {line.split()[1] for line in text.splitlines() if line.startswith("#!define ")}
    keep, stack, out = True, [], []
    for line in text.splitlines():
        if line.startswith("#!ifdef "):
            stack.append(keep)
            keep = keep and line.split()[1] in defined
        elif line.startswith("#!endif"):
            keep = stack.pop()
        elif keep:
            out.append(line)
    return out


def kamailio_check(tmp_path: Path, cfg: EdgeConfig) -> None:
    if shutil.which("kamailio") is None:
        pytest.skip("kamailio is not installed: make setup")
    path = tmp_path / "kamailio.cfg"
    path.write_text(render_config(cfg))
    out = subprocess.run(["kamailio", "-c", "-f", str(path)], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr


def test_without_websocket_ports_nothing_of_webrtc_is_loaded(tmp_path: Path) -> None:
    cfg = EdgeConfig(run_dir=tmp_path)
    lines = active_lines(render_config(cfg))
    assert not [line for line in lines for m in WEBRTC_MODULES if m in line]
    assert not [line for line in lines if "rtpengine_" in line or "tls" in line]
    kamailio_check(tmp_path, cfg)


def test_ws_port_listens_and_hands_browser_calls_to_rtpengine(tmp_path: Path) -> None:
    cfg = EdgeConfig(run_dir=tmp_path, sip_port=5070, ws_port=5066,
                     rtpengine_ng=("127.0.0.1", 2299))
    text = render_config(cfg)
    lines = active_lines(text)
    assert "listen=tcp:127.0.0.1:5066" in lines
    assert all(any(m in line for line in lines) for m in WEBRTC_MODULES)
    assert 'modparam("rtpengine", "rtpengine_sock", "udp:127.0.0.1:2299")' in lines
    assert "\tif ($Rp != 5066) {" in lines  # the upgrade is taken on the ws port only
    assert not [line for line in lines if "tls" in line]
    kamailio_check(tmp_path, cfg)


def test_wss_needs_a_certificate_and_listens_on_tls(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="certificate"):
        render_config(EdgeConfig(run_dir=tmp_path, wss_port=5067))
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cfg = EdgeConfig(run_dir=tmp_path, wss_port=5067, tls_cert=cert, tls_key=key)
    lines = active_lines(render_config(cfg))
    assert "listen=tls:127.0.0.1:5067" in lines and "enable_tls=yes" in lines
    assert f'modparam("tls", "certificate", "{cert}")' in lines
    assert "\tif ($Rp != 5067) {" in lines


def test_rtpengine_runs_in_userspace_on_its_own_ports(tmp_path: Path) -> None:
    argv = RtpengineConfig(run_dir=tmp_path, media_ip="10.0.0.5", ng_port=2300,
                           port_min=40000, port_max=40099).argv("rtpengine")
    assert "--table=-1" in argv and "--interface=10.0.0.5" in argv
    assert {"--listen-ng=127.0.0.1:2300", "--port-min=40000", "--port-max=40099"} <= set(argv)
