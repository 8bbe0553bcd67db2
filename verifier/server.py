"""HTTP: /metrics, /healthz, /readyz, /status (HTML), /status.json, /gate. No I/O on a scrape path
except /gate, which evaluates the ledger on demand so a rollout controller sees the current verdict."""

from __future__ import annotations

import html
import json
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client.aiohttp import make_aiohttp_handler

from .errors import SourceUnavailable

if TYPE_CHECKING:
    from .service import Service

SERVICE_KEY: web.AppKey[Service] = web.AppKey("service")


def create_app(service: Service) -> web.Application:
    app = web.Application()
    app[SERVICE_KEY] = service
    metrics_handler = make_aiohttp_handler(service.metrics.registry)
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/status", status_html)
    app.router.add_get("/status.json", status_json)
    app.router.add_get("/gate", gate)
    app.router.add_get("/", index)
    return app


async def start_server(service: Service) -> web.AppRunner:
    runner = web.AppRunner(create_app(service), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, service.settings.server.host, service.settings.server.port)
    try:
        await site.start()
    except OSError as exc:  # port taken, address not local: one line and exit 3, not a traceback
        await runner.cleanup()
        reason = exc.strerror or str(exc)
        raise SourceUnavailable(f"server.listen {service.settings.server.listen}: cannot listen: {reason}") from None
    return runner


async def index(request: web.Request) -> web.Response:
    raise web.HTTPFound("/status")


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


async def readyz(request: web.Request) -> web.Response:
    service = request.app[SERVICE_KEY]
    if service.ready:
        return web.Response(text="ready\n")
    return web.Response(status=503, text="not ready\n")


def _dumps(value: Any) -> str:
    return json.dumps(value, indent=2, default=str) + "\n"


async def status_json(request: web.Request) -> web.Response:
    return web.json_response(request.app[SERVICE_KEY].status(), dumps=_dumps)


async def gate(request: web.Request) -> web.Response:
    verdict = await request.app[SERVICE_KEY].evaluate_gate()
    return web.json_response(verdict.as_dict(), dumps=_dumps)  # 200 whatever the verdict


async def status_html(request: web.Request) -> web.Response:
    return web.Response(text=render_status(request.app[SERVICE_KEY].status()), content_type="text/html")


# --- the page ----------------------------------------------------------------------------------------

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em;margin:0 0 .2em} h2{font-size:1.1em;margin:1.4em 0 .4em;border-bottom:1px solid #ddd}
table{border-collapse:collapse} td,th{padding:.25em .7em;text-align:left;border-bottom:1px solid #eee;vertical-align:top}
.GO{color:#0a7d32}.NO-GO{color:#c0161d}.INCONCLUSIVE{color:#b26a00}
.bad{color:#c0161d}.ok{color:#0a7d32}.muted{color:#777} code{font-size:12px}
.verdict{font-size:1.6em;font-weight:600}
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _yes(flag: Any) -> str:
    if flag is None:
        return '<span class="muted">unknown</span>'
    return '<span class="ok">up</span>' if flag else '<span class="bad">down</span>'


def render_status(status: dict[str, Any]) -> str:
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><meta http-equiv='refresh' content='10'>"
             f"<title>parity-verifier</title><style>{_STYLE}</style></head><body>",
             f"<h1>parity-verifier {_e(status['version'])}</h1>",
             f"<div class='muted'>started {_e(status['started_at'])} · now {_e(status['now'])} · "
             f"<a href='/status.json'>JSON</a> · <a href='/metrics'>metrics</a> · <a href='/gate'>gate</a></div>"]

    gate = status.get("gate")
    parts.append("<h2>Cutover gate</h2>")
    if gate:
        verdict = gate["verdict"]
        parts.append(f"<div class='verdict {_e(verdict)}'>{_e(verdict)}</div><table><tr><th></th><th>condition</th>"
                     "<th>measured</th><th>threshold</th><th>detail</th></tr>")
        for cond in gate["conditions"]:
            mark = "<span class='ok'>✓</span>" if cond["ok"] else "<span class='bad'>✗</span>"
            measured = cond.get("measured", cond["value"])
            limit = cond.get("limit", cond["threshold"])
            parts.append(f"<tr><td>{mark}</td><td>{_e(cond['name'])}</td><td>{_e(measured)}</td>"
                         f"<td>{_e(limit)}</td><td>{_e(cond['detail'])}</td></tr>")
        parts.append("</table>")
        if gate.get("blocking_versions"):
            names = ", ".join(f"{v.get('tenant')}/{v.get('app')} {v.get('version')} ({v.get('outcome')})"
                              for v in gate["blocking_versions"][:20])
            parts.append(f"<p class='bad'>Blocking: {_e(names)}</p>")
    else:
        parts.append("<p class='muted'>not evaluated yet</p>")

    parity = status["parity"]
    coverage = status["coverage"]
    parts.append("<h2>Parity by state</h2><table>")
    for state, count in parity.items():
        cls = "bad" if count and state not in ("match", "unverified") else ""
        parts.append(f"<tr><td>{_e(state)}</td><td class='{cls}'>{_e(count)}</td></tr>")
    parts.append("</table><h2>Coverage</h2><table>"
                 f"<tr><td>checked within the window</td><td>{coverage['ratio'] * 100:.1f}%</td></tr>"
                 f"<tr><td>coverage window</td><td>{_e(coverage['window_seconds'])} s</td></tr>"
                 f"<tr><td>stalest check</td><td>{_e(coverage['oldest_check_age_seconds'])} s ago</td></tr>"
                 f"<tr><td>due now</td><td>{_e(coverage['backlog'])}</td></tr>"
                 f"<tr><td>in flight</td><td>{_e(coverage['in_flight'])}</td></tr></table>")

    inv, reg = status["inventory"], status["registry"]
    parts.append("<h2>Sources</h2><table>"
                 f"<tr><td>inventory ({_e(inv['source'])})</td><td>{_yes(inv['up'])}</td>"
                 f"<td>{_e(inv['versions'])} versions; last refresh {_e(inv['last_refresh'])}</td>"
                 f"<td class='bad'>{_e(inv['error'])}</td></tr>"
                 f"<tr><td>registry {_e(reg['url'])}</td><td>{_yes(reg['up'])}</td>"
                 f"<td>probe {_e(reg['probe_seconds'])} s</td><td class='bad'>{_e(reg['error'])}</td></tr>"
                 "</table>")

    parts.append("<h2>Most recent non-matches</h2>")
    recent = status["recent_non_matches"]
    if not recent:
        parts.append("<p class='muted'>none</p>")
    else:
        parts.append("<table><tr><th>checked</th><th>version</th><th>outcome</th><th>wrong side</th>"
                     "<th>faults</th><th>detail</th><th>now</th></tr>")
        for r in recent:
            now_state = r.get("state_now", "")
            now_class = "ok" if now_state == "match" else "bad" if now_state != "unverified" else "muted"
            parts.append(f"<tr><td>{_e(r.get('checked_at'))}</td><td>{_e(r['tenant'])}/{_e(r['app'])} "
                         f"{_e(r['version'])}</td><td class='bad'>{_e(r['outcome'])}</td><td>{_e(r['wrong_side'])}</td>"
                         f"<td><code>{_e(', '.join(r['faults']))}</code></td><td>{_e(r['detail'])}</td>"
                         f"<td class='{now_class}'>{_e(now_state)}</td></tr>")
        parts.append("</table>")

    supply = status.get("supply_chain")
    parts.append("<h2>Supply chain</h2>")
    if supply:
        parts.append(render_supply_chain(supply))
    else:
        parts.append("<p class='muted'>not read yet</p>")
    parts.append("</body></html>")
    return "".join(parts)


def render_supply_chain(supply: dict[str, Any]) -> str:
    out = []
    for note in supply.get("notes", []) or []:
        out.append(f"<p>{_e(note)}</p>")
    flavour = supply.get("flavour") or {}
    out.append(f"<p>registry flavour: <b>{_e(flavour.get('name'))}</b> {_e(flavour.get('release_tag') or '')}"
               f" · refreshed {_e(supply.get('refreshed_at'))}"
               f"{' · <span class=bad>' + _e(supply.get('error')) + '</span>' if supply.get('error') else ''}</p>")
    for title, key in (("Scan state", "scan_versions"), ("Vulnerabilities (newest version of each app)",
                                                         "vulnerabilities"), ("Signatures", "signature_versions")):
        counts = supply.get(key)
        if isinstance(counts, dict):
            rows = "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in counts.items())
            out.append(f"<h3>{_e(title)}</h3><table>{rows}</table>")
    return "".join(out)
