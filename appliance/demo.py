"""`make run`: one Branchline node with two demo tenants, on loopback.

Writes the demo plan once (random passwords, kept in ``run/demo/plan.yaml`` so a
second run keeps the same credentials), starts the node (Kamailio edge + feature
server + media), writes the manifest ``run/demo.json`` when everything answers,
and stops every process it started on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import secrets
import signal
import sys
from pathlib import Path
from typing import Any

import uvloop
import yaml

from appliance.link.client import LinkClient
from appliance.node import Node, NodeConfig, time_zone
from appliance.passwords import hash_secret
from appliance.plan import Plan, PlanError, token_hash
from appliance.web import SOFTPHONE_JS

log = logging.getLogger("branchline.demo")

CARRIER_ADDRESS = "127.0.0.2"
SAMPLE_FLOW = Path(__file__).resolve().parent / "ivr" / "samples" / "acme-main.yaml"


def demo_plan_dict() -> tuple[dict[str, Any], dict[str, Any]]:
    """The demo plan and its secrets in clear (the plan holds only their hashes)."""
    def pw() -> str:
        return secrets.token_urlsafe(12)

    clear: dict[str, Any] = {
        "operator_token": secrets.token_urlsafe(24),
        "tenants": {t: {"api_token": secrets.token_urlsafe(24),
                        "mailboxes": {box: f"{secrets.randbelow(10**6):06d}" for box in boxes},
                        "agents": {agent: pw() for agent in agents}}
                    for t, boxes, agents in (("acme", ("1001", "1002"),
                                              ("alice", "bob", "sue")),
                                             ("globex", ("2001",), ()))},
    }

    def tenant_secrets(tenant: str) -> dict[str, Any]:
        own = clear["tenants"][tenant]
        return {"api_tokens": [token_hash(own["api_token"])],
                "mailboxes": [{"number": box, "pin": hash_secret(pin)}
                              for box, pin in own["mailboxes"].items()]}

    def agent_password(tenant: str, agent: str) -> str:
        return hash_secret(clear["tenants"][tenant]["agents"][agent])

    return {
        "version": 1,
        "node": {"id": "demo", "api_tokens": [token_hash(clear["operator_token"])]},
        "trunks": [{"name": "carrier", "address": CARRIER_ADDRESS, "port": 5060}],
        "tenants": [
            {
                "id": "acme",
                "domain": "acme.example",
                "caller_id": "+862088880000",
                "extensions": [
                    {"number": "1001", "password": pw(), "name": "Acme Alice"},
                    {"number": "1002", "password": pw(), "name": "Acme Bob"},
                    {"number": "1003", "password": pw(), "name": "Acme Sue"},
                ],
                "dids": [
                    {"number": "+862088880001", "target": "1001"},
                    {"number": "+862088880002", "target": "1002"},
                    {"number": "+862088880003", "target": "1003"},
                    {"number": "+862088880099", "target": "echo"},
                    {"number": "+862088880077", "target": "flow:acme-main"},
                    {"number": "+862088880078", "target": "flow:sys-voicemail"},
                    {"number": "+862088880088", "target": "queue:sales"},
                ],
                "hunt_groups": [{"number": "600", "members": ["1001", "1002"]}],
                "agents": [{"id": "alice", "extension": "1001", "name": "Acme Alice",
                            "skills": {"sales": 5}, "password": agent_password("acme", "alice")},
                           {"id": "bob", "extension": "1002", "name": "Acme Bob",
                            "skills": {"sales": 3}, "password": agent_password("acme", "bob")},
                           {"id": "sue", "extension": "1003", "name": "Acme Sue",
                            "supervisor": True, "password": agent_password("acme", "sue")}],
                "queues": [{"name": "sales", "agents": ["alice", "bob"], "ring_seconds": 15,
                            "strategy": "best_skill", "max_wait": 120,
                            "announce_position_every": 30}],
                "acd": {"max_on_break": 1, "not_ready_reasons": ["lunch", "training"],
                        "wrap_up_codes": ["sale", "enquiry", "complaint", "callback"]},
                "announcements": [
                    {"number": "700", "text": "Welcome to Acme.", "voice": "en-us"}
                ],
                "outbound": [{"prefix": "0", "trunk": "carrier", "strip": 1, "prepend": "+86"}],
                "flows": {"acme-main": yaml.safe_load(SAMPLE_FLOW.read_text(encoding="utf-8"))},
                **tenant_secrets("acme"),
            },
            {
                "id": "globex",
                "domain": "globex.example",
                "caller_id": "+85230000000",
                "extensions": [
                    {"number": "2001", "password": pw(), "name": "Globex Carol"},
                    {"number": "2002", "password": pw(), "name": "Globex Dan"},
                ],
                "dids": [
                    {"number": "+85230000001", "target": "2001"},
                    {"number": "+85230000002", "target": "2002"},
                    {"number": "+85230000099", "target": "echo"},
                ],
                "announcements": [
                    {"number": "700", "text": "欢迎致电环球公司。", "voice": "cmn"}
                ],
                "outbound": [{"prefix": "9", "trunk": "carrier", "strip": 1}],
                **tenant_secrets("globex"),
            },
        ],
    }, clear


def load_or_create_plan(path: Path) -> Plan:
    """The demo plan, made once; its clear secrets (API tokens, voicemail PINs) go to
    ``secrets.json`` beside it, readable by the owner only, for the manifest."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        doc, clear = demo_plan_dict()
        secret_file = path.parent / "secrets.json"
        secret_file.write_text(json.dumps(clear, indent=2))
        secret_file.chmod(0o600)
        path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))
        path.chmod(0o600)
    return Plan.from_dict(yaml.safe_load(path.read_text()))


def read_secrets(plan_file: Path) -> dict[str, Any]:
    try:
        loaded: dict[str, Any] = json.loads((plan_file.parent / "secrets.json").read_text())
        return loaded
    except (OSError, ValueError):
        return {}


def manifest(plan: Plan, cfg: NodeConfig, plan_file: Path, pid_file: Path) -> dict[str, Any]:
    carrier = plan.trunk("carrier")
    clear = read_secrets(plan_file)
    own = clear.get("tenants", {})
    desk_url = web_manifest(cfg).get("desk_url")
    return {
        "sip": {"host": cfg.sip_host, "port": cfg.sip_port,
                "transports": ["udp", "tcp"] + ["ws"] * bool(cfg.ws_port)
                + ["wss"] * bool(cfg.wss_port)},
        "carrier": {"address": carrier.address if carrier else None},
        "tenants": [
            {
                "id": t.id,
                "domain": t.domain,
                "caller_id": t.caller_id,
                "extensions": [
                    {"number": e.number, "password": e.password, "name": e.name}
                    for e in t.extensions
                ],
                "dids": [{"number": d.number, "target": d.target} for d in t.dids],
                "outbound_prefixes": [r.prefix for r in t.outbound],
                **({"ivr": ivr} if (ivr := next((d.number for d in t.dids
                                                 if d.target.startswith("flow:")), None))
                   else {}),
                **({"voicemail": vm} if (vm := next((d.number for d in t.dids
                                                    if d.target == "flow:sys-voicemail"),
                                                   None)) else {}),
                "mailboxes": [{"number": m.number,
                               **({"pin": pin} if (pin := own.get(t.id, {}).get(
                                   "mailboxes", {}).get(m.number)) else {})}
                              for m in t.mailboxes],
                **({"api_token": own[t.id]["api_token"]} if t.id in own else {}),
                "queues": [{"name": q.name, **({"did": did} if (did := next(
                    (d.number for d in t.dids if d.target == f"queue:{q.name}"), None)) else {})}
                    for q in t.queues],
                "agents": (agents := [
                    {"id": a.id, "extension": a.extension, "supervisor": a.supervisor,
                     **({"url": desk_url} if desk_url else {}),
                     **({"password": pw} if (pw := own.get(t.id, {}).get(
                         "agents", {}).get(a.id)) else {})} for a in t.agents]),
                # the supervisor's desk login (the same page shows the supervisor's panel)
                **({"supervisor": sup} if (sup := next(
                    (a for a in agents if a["supervisor"]), None)) else {}),
            }
            for t in plan.tenants
        ],
        "cdr": {
            "command": [sys.executable, "-m", "appliance.cdr", "--db", str(cfg.cdr_path)],
        },
        "status": {"path": str(cfg.status_path)},
        "api": {"url": f"http://{cfg.api_host}:{cfg.api_port}/api/v1",
                **({"operator_token": clear["operator_token"]}
                   if "operator_token" in clear else {})},
        "storage": {"path": str(cfg.storage_dir)},
        "trace": {
            "path": str(cfg.trace_path),
            "command": [sys.executable, "-m", "appliance.trace", "--file",
                        str(cfg.trace_path)],
        },
        "flows": {
            "lint": [sys.executable, "-m", "appliance.ivr", "lint"],
            "deploy": [sys.executable, "-m", "appliance.ivr", "deploy", "--plan",
                       str(plan_file), "--pid-file", str(pid_file)],
        },
        "web": web_manifest(cfg),
    }


def web_manifest(cfg: NodeConfig) -> dict[str, Any]:
    """Where browsers reach the node (SIP over WebSocket) and the softphone script."""
    out: dict[str, Any] = {}
    if cfg.ws_url:
        out["ws_url"] = cfg.ws_url
    if cfg.wss_url:
        out["wss_url"] = cfg.wss_url
    if out:
        out["softphone_js"] = str(SOFTPHONE_JS)
    if cfg.api_port:
        out["desk_url"] = f"http://{cfg.api_host}:{cfg.api_port}/desk/"  # agent desktop
    return out


def write_manifest(path: Path, content: dict[str, Any]) -> None:
    """Atomically (rename), readable only by the owner: it holds the SIP passwords."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(content, indent=2, ensure_ascii=False))
    tmp.chmod(0o600)
    tmp.replace(path)


async def run(run_root: Path, cfg_overrides: dict[str, Any], plan_path: Path | None) -> None:
    if plan_path is not None:
        plan = Plan.from_dict(yaml.safe_load(plan_path.read_text()))
    else:
        plan = load_or_create_plan(run_root / "demo" / "plan.yaml")
    cfg = NodeConfig(run_dir=run_root / "demo" / "node", **cfg_overrides)
    node = Node(cfg, plan)
    stop = _stop_event()
    loop = asyncio.get_running_loop()
    manifest_path = run_root / "demo.json"
    manifest_path.unlink(missing_ok=True)
    plan_file = plan_path or run_root / "demo" / "plan.yaml"
    pid_file = run_root / "demo" / "node.pid"
    reloads: set[asyncio.Task[None]] = set()

    async def reload_plan() -> None:
        """SIGHUP: apply the plan file again; a bad plan is refused, the old one stays."""
        try:
            new = Plan.from_dict(yaml.safe_load(plan_file.read_text()))
        except (PlanError, yaml.YAMLError, OSError) as exc:
            log.error("plan %s refused, still serving version %d: %s", plan_file,
                      node.plan.version, exc)
            return
        await node.apply_plan(new)
        write_manifest(manifest_path, manifest(new, cfg, plan_file, pid_file))
        log.info("plan version %d applied", new.version)

    def on_hup() -> None:
        task = loop.create_task(reload_plan())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, on_hup)
    try:
        await node.start()
        pid_file.write_text(f"{os.getpid()}\n")
        write_manifest(manifest_path, manifest(plan, cfg, plan_file, pid_file))
        log.info("demo node ready: SIP %s:%d; manifest %s (Ctrl-C to stop, SIGHUP reloads "
                 "the plan)", cfg.sip_host, cfg.sip_port, manifest_path)
        await stop.wait()
    finally:
        log.info("stopping")
        manifest_path.unlink(missing_ok=True)
        pid_file.unlink(missing_ok=True)
        await node.stop()


def _stop_event() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def run_managed(run_root: Path, cfg_overrides: dict[str, Any], controller: str,
                      claim: str | None, ca: Path | None, extra: dict[str, Any]) -> None:
    """A node managed by a controller over the node link: enrol with the claim code if
    not enrolled yet, start from the last good plan on disk when there is one (the
    controller may be unreachable), and apply every plan the controller pushes; a
    plan the node refuses is acknowledged with the reason and the old one stays."""
    host, _, port = controller.rpartition(":")
    cfg = NodeConfig(run_dir=run_root / "demo" / "node", **cfg_overrides)
    link_dir = cfg.run_dir / "link"
    link_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    manifest_path = run_root / "demo.json"
    manifest_path.unlink(missing_ok=True)
    stop = _stop_event()
    holder: list[Node] = []
    started = asyncio.Event()

    async def apply(version: int, doc: dict[str, Any]) -> None:
        plan = Plan.from_dict(doc)
        if plan.version != version or plan.node_id != client.node_id:
            raise PlanError("node.id", f"this is node {client.node_id} at version {version}")
        if not holder:
            node = Node(cfg, plan)
            holder.append(node)
            await node.start()
            started.set()
        else:
            await holder[0].apply_plan(plan)
        write_manifest(manifest_path, _managed_manifest(plan, cfg, extra))
        log.info("plan version %d from the controller applied", version)

    def status() -> dict[str, Any]:
        return holder[0].status_doc() if holder else {"starting": True}

    client = LinkClient((host, int(port)), link_dir, apply, status)
    if not client.enrolled:
        if not claim or ca is None:
            raise SystemExit("error: this node is not enrolled: give --claim and --ca")
        node_id = await client.enrol(claim, ca.read_bytes())
        log.info("enrolled as node %s", node_id)
    last = LinkClient.last_good_plan(link_dir)
    if last is not None:
        await apply(*last)
    link = asyncio.get_running_loop().create_task(client.run(), name="node-link")
    try:
        await stop.wait()
    finally:
        link.cancel()
        await asyncio.gather(link, return_exceptions=True)
        manifest_path.unlink(missing_ok=True)
        if holder:
            await holder[0].stop()


def _managed_manifest(plan: Plan, cfg: NodeConfig, extra: dict[str, Any]) -> dict[str, Any]:
    """The demo manifest of a managed node: the node's part, the controller's, and each
    tenant's administrator."""
    plan_file = cfg.run_dir.parent / "plan.yaml"
    doc = manifest(plan, cfg, plan_file, cfg.run_dir.parent / "node.pid")
    doc["controller"] = extra.get("controller", {})
    # the plan comes from the controller: flows are uploaded there, not deployed here
    doc["flows"] = {"lint": doc["flows"]["lint"],
                    "upload": doc["controller"].get("api", "") + "/flows/{name}"}
    admins = extra.get("tenant_admins", {})
    for tenant in doc["tenants"]:
        if tenant["id"] in admins:
            tenant["admin"] = admins[tenant["id"]]
    return doc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the Branchline demo node")
    parser.add_argument("--run-dir", type=Path, default=Path("run"),
                        help="where the plan, the node's state and demo.json go")
    parser.add_argument("--plan", type=Path, help="serve this plan instead of the demo plan")
    parser.add_argument("--sip-port", type=int, default=5060)
    parser.add_argument("--fs-port", type=int, default=5080)
    parser.add_argument("--rtp-range", default="20000-29999", help="LOW-HIGH RTP ports")
    parser.add_argument("--flood-limit", type=int, default=100,
                        help="requests per 2 s one source address may send before a ban")
    parser.add_argument("--record", action="store_true", help="record every bridged call")
    parser.add_argument("--ring-timeout", type=float, default=60.0)
    parser.add_argument("--timezone", default="UTC",
                        help="IANA zone of the ACD's night hours and daily records")
    parser.add_argument("--api-port", type=int, default=8088,
                        help="the node's HTTP API (monitoring, voicemail, prompts) on loopback")
    parser.add_argument("--ws-port", type=int, default=0,
                        help="SIP over WebSocket (ws://) for browser softphones; 0 = off")
    parser.add_argument("--wss-port", type=int, default=0,
                        help="SIP over secure WebSocket (wss://); needs --tls-cert/--tls-key")
    parser.add_argument("--tls-cert", type=Path, help="PEM certificate (chain) for wss")
    parser.add_argument("--tls-key", type=Path, help="PEM private key for wss")
    parser.add_argument("--rtpengine-port", type=int, default=2223,
                        help="rtpengine's control (ng) port on loopback, with ws/wss")
    parser.add_argument("--webrtc-rtp-range", default="30000-30999",
                        help="LOW-HIGH rtpengine's RTP ports for browsers' calls")
    parser.add_argument("--controller", metavar="HOST:PORT",
                        help="managed by this controller's node link instead of a plan file")
    parser.add_argument("--claim", help="one-time claim code (first start only)")
    parser.add_argument("--ca", type=Path, help="the controller's link CA certificate")
    parser.add_argument("--manifest-extra", type=Path,
                        help="JSON merged into demo.json (controller, tenant admins)")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop",
                        help="event loop (uvloop relays RTP at about half the CPU)")
    args = parser.parse_args(argv)
    low, _, high = args.rtp_range.partition("-")
    web_low, _, web_high = args.webrtc_rtp_range.partition("-")
    if args.wss_port and not (args.tls_cert and args.tls_key):
        parser.error("--wss-port needs --tls-cert and --tls-key")
    try:
        time_zone(args.timezone)
    except ValueError as exc:
        parser.error(f"--timezone: {exc}")
    overrides = {
        "sip_port": args.sip_port, "fs_port": args.fs_port, "rtp_low": int(low),
        "rtp_high": int(high), "flood_requests_per_2s": args.flood_limit,
        "record_calls": args.record, "ring_timeout": args.ring_timeout,
        "api_port": args.api_port, "ws_port": args.ws_port, "wss_port": args.wss_port,
        "tls_cert": args.tls_cert.resolve() if args.tls_cert else None,
        "tls_key": args.tls_key.resolve() if args.tls_key else None,
        "rtpengine_port": args.rtpengine_port, "webrtc_rtp_low": int(web_low),
        "webrtc_rtp_high": int(web_high), "timezone": args.timezone,
    }
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if args.controller:
        extra = json.loads(args.manifest_extra.read_text()) if args.manifest_extra else {}
        main_coro = run_managed(args.run_dir.resolve(), overrides, args.controller,
                                args.claim, args.ca, extra)
    else:
        main_coro = run(args.run_dir.resolve(), overrides, args.plan)
    try:
        if args.loop == "uvloop":
            uvloop.run(main_coro)
        else:
            asyncio.run(main_coro)
    except PlanError as exc:
        print(f"error: invalid plan: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
