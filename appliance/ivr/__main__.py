"""Flow tools: ``python -m appliance.ivr lint FILE`` and ``... deploy``.

``lint`` validates a flow file and prints ``ok <flow> v<version>: N nodes`` or the
precise error (field path and line) and exits 1.

``deploy`` installs a flow in a node's plan file for a tenant and attaches it to a
number (a new or existing DID of that tenant); the plan is validated as a whole and
written atomically, then the running node is told to reload it (SIGHUP to the pid in
``--pid-file``). A flow or plan that fails validation changes nothing: the previous
version stays live.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import yaml

from appliance.ivr.flow import FlowError, load_flow
from appliance.passwords import hash_secret
from appliance.plan import Plan, PlanError


def lint(path: Path) -> int:
    try:
        flow = load_flow(path.read_text(encoding="utf-8"))
    except OSError as exc:
        print(f"{path}: cannot read: {exc.strerror}", file=sys.stderr)
        return 1
    except FlowError as exc:
        print(f"{path}: {exc}", file=sys.stderr)
        return 1
    print(f"ok {flow.id} v{flow.version}: {len(flow.nodes)} nodes")
    return 0


def deploy(path: Path, plan_path: Path, tenant_id: str, number: str,
           pid_file: Path | None) -> int:
    if lint(path) != 0:
        return 1
    flow_doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    doc: dict[str, Any] = yaml.safe_load(plan_path.read_text(encoding="utf-8"))
    tenant = next((t for t in doc.get("tenants", []) if t.get("id") == tenant_id), None)
    if tenant is None:
        print(f"{plan_path}: no tenant {tenant_id!r}", file=sys.stderr)
        return 1
    name = flow_doc["flow"]
    tenant.setdefault("flows", {})[name] = flow_doc
    dids = tenant.setdefault("dids", [])
    did = next((d for d in dids if d.get("number") == number), None)
    if did is None:
        dids.append({"number": number, "target": f"flow:{name}"})
    else:
        did["target"] = f"flow:{name}"
    doc["version"] = int(doc.get("version", 0)) + 1
    try:
        Plan.from_dict(doc)
    except PlanError as exc:
        print(f"plan refused, nothing changed: {exc}", file=sys.stderr)
        return 1
    tmp = plan_path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    tmp.chmod(0o600)
    tmp.replace(plan_path)
    print(f"flow {name} v{flow_doc['version']} deployed for {tenant_id} on {number} "
          f"(plan version {doc['version']})")
    if pid_file is not None and pid_file.exists():
        pid = int(pid_file.read_text().strip())
        os.kill(pid, signal.SIGHUP)
        print(f"node {pid} asked to reload the plan")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m appliance.ivr",
                                     description="IVR flow tools")
    sub = parser.add_subparsers(dest="command", required=True)
    p_lint = sub.add_parser("lint", help="validate a flow file")
    p_lint.add_argument("file", type=Path)
    p_deploy = sub.add_parser("deploy", help="install a flow for a tenant and number")
    p_deploy.add_argument("file", type=Path)
    p_deploy.add_argument("--plan", type=Path, required=True, help="the node's plan file")
    p_deploy.add_argument("--tenant", required=True)
    p_deploy.add_argument("--number", required=True, help="DID to attach the flow to")
    p_deploy.add_argument("--pid-file", type=Path, help="SIGHUP this node afterwards")
    sub.add_parser("schema", help="print the JSON Schema of flow documents")
    p_pin = sub.add_parser("pin", help="print the hash of a voicemail PIN for the plan")
    p_pin.add_argument("pin", help="4 to 12 digits")
    args = parser.parse_args(argv)
    if args.command == "lint":
        return lint(args.file)
    if args.command == "schema":
        from appliance.ivr.schema import flow_schema

        print(json.dumps(flow_schema(), indent=2, ensure_ascii=False))
        return 0
    if args.command == "pin":
        if not (args.pin.isdigit() and 4 <= len(args.pin) <= 12):
            print("error: a PIN is 4 to 12 digits", file=sys.stderr)
            return 2
        print(hash_secret(args.pin))
        return 0
    return deploy(args.file, args.plan, args.tenant, args.number, args.pid_file)


if __name__ == "__main__":
    raise SystemExit(main())
