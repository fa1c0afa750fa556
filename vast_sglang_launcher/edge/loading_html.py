"""The loading page: one self-contained HTML document (inline style and script, no external
scripts, fonts or images, so it works on an instance with no internet).

The page carries the not-ready JSON (`loading_view`) it was rendered with, draws it, and
polls its own URL for fresh JSON every POLL_MS (`Accept: application/json`, the login
cookie goes along). While SGLang is not ready the edge answers that poll with the same 503
JSON; any other answer means SGLang answers now, and the page turns into a link to /docs.
Every value is put into the page with `textContent`, never as HTML, so a server line cannot
inject markup; the JSON is embedded with `<`, `>` and `&` escaped.
"""

from __future__ import annotations

import json
from typing import Any

POLL_MS = 2000

_STYLE = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;
background:#f4f5f7;color:#1d2330}
main{max-width:760px;margin:32px auto;padding:24px 28px;background:#fff;border-radius:10px;
box-shadow:0 1px 4px #0002}
h1{font-size:22px;margin:0 0 4px}
#message{margin:0 0 16px;color:#39404d}
.bar{height:14px;background:#e4e7ec;border-radius:7px;overflow:hidden;margin:6px 0 4px}
.bar>div{height:100%;background:#2f6fdf;width:0;transition:width .5s}
#progress-text{font-variant-numeric:tabular-nums;color:#39404d}
ol{list-style:none;padding:0;margin:16px 0}
li{display:flex;justify-content:space-between;padding:5px 0;border-bottom:1px solid #eef0f3}
li .t::before{display:inline-block;width:1.4em;content:"\\2713";color:#2a8a46}
li.running .t::before{content:"\\25CF";color:#2f6fdf}
li.running{font-weight:600}
li .d{font-variant-numeric:tabular-nums;color:#5b6270}
#hint{background:#fff4e5;border-left:4px solid #e08a00;padding:10px 12px;margin:12px 0}
.failed h1{color:#b3261e}
pre{background:#11151c;color:#d7dde8;padding:10px 12px;border-radius:6px;overflow-x:auto;
font:12px/1.4 ui-monospace,Menlo,Consolas,monospace;white-space:pre-wrap;word-break:break-all}
#ready a{font-size:18px}
footer{margin-top:16px;font-size:12px;color:#6b7280}
[hidden]{display:none!important}
"""

_SCRIPT = """
(function () {
  var POLL_MS = @POLL_MS@;
  var got = 0, view = null;
  function $(id) { return document.getElementById(id); }
  function text(id, value) { $(id).textContent = value || ""; }
  function dur(s) {
    if (s === null || s === undefined) return "";
    if (s < 60) return s.toFixed(1) + " s";
    s = Math.round(s);
    if (s < 3600) return Math.floor(s / 60) + " min " + (s % 60) + " s";
    return Math.floor(s / 3600) + " h " + Math.floor(s % 3600 / 60) + " min";
  }
  function render(data) {
    var e = (data && data.error) || {};
    view = e; got = Date.now();
    var failed = e.code === "failed";
    document.body.className = failed ? "failed" : "";
    text("title", failed ? "SGLang failed to start" : "SGLang is loading");
    text("phase", e.title && !failed ? "Now: " + e.title : "");
    var p = e.progress;
    // the bar says it all while it is drawn; after a give-up the hint box says what to do
    text("message", p ? "" : failed && e.reason ? "The launcher gave up: " + e.reason : e.message);
    $("progress").hidden = !p;
    if (p) {
      $("fill").style.width = Math.round((p.fraction || 0) * 1000) / 10 + "%";
      text("progress-text", p.text);
    }
    var list = $("phases");
    list.textContent = "";
    (e.phases || []).forEach(function (ph) {
      var li = document.createElement("li");
      li.className = ph.state;
      var t = document.createElement("span"); t.className = "t"; t.textContent = ph.title;
      var d = document.createElement("span"); d.className = "d";
      d.textContent = ph.duration + (ph.state === "running" ? " so far" : "");
      li.appendChild(t); li.appendChild(d); list.appendChild(li);
    });
    $("hint").hidden = !e.hint;
    text("hint-text", e.hint);
    var lines = e.last_lines || [];
    $("lines-box").hidden = !lines.length;
    text("lines", lines.join("\\n"));
  }
  function tick() {
    var items = document.querySelectorAll("#phases li.running .d");
    var running = (view && view.phases || []).filter(function (ph) {
      return ph.state === "running";
    });
    if (items.length && running.length && running[0].duration_s !== null) {
      items[0].textContent = dur(running[0].duration_s + (Date.now() - got) / 1000) + " so far";
    }
  }
  function ready() {
    $("loading").hidden = true;
    $("ready").hidden = false;
    document.body.className = "";
    text("title", "SGLang is ready");
  }
  function poll() {
    var req = new XMLHttpRequest();
    req.open("GET", location.pathname + location.search);
    req.setRequestHeader("Accept", "application/json");
    req.onload = function () {
      var data = null;
      try { data = JSON.parse(req.responseText); } catch (err) { data = null; }
      if (req.status === 503 && data && data.error && data.error.type === "server_not_ready") {
        render(data); text("conn", ""); setTimeout(poll, POLL_MS);
      } else if (req.status === 401) {
        text("conn", "Signed out: open the instance link with ?token= again.");
        setTimeout(poll, POLL_MS * 5);
      } else {
        ready();
      }
    };
    req.onerror = function () {
      text("conn", "No answer from the instance; retrying.");
      setTimeout(poll, POLL_MS);
    };
    req.send();
  }
  render(JSON.parse($("data").textContent));
  setInterval(tick, 1000);
  setTimeout(poll, POLL_MS);
})();
""".replace("@POLL_MS@", str(POLL_MS))

_BODY = """<main>
<h1 id="title">SGLang is loading</h1>
<div id="loading">
<p id="phase"></p>
<p id="message"></p>
<div id="progress" hidden><div class="bar"><div id="fill"></div></div>
<span id="progress-text"></span></div>
<ol id="phases"></ol>
<div id="hint" hidden><strong>What to do: </strong><span id="hint-text"></span></div>
<div id="lines-box" hidden><h2 style="font-size:15px;margin:14px 0 4px">Last server lines</h2>
<pre id="lines"></pre></div>
<noscript>This page updates itself with JavaScript; reload it to see the latest state.</noscript>
</div>
<p id="ready" hidden>The server answers now: <a href="/docs">open the API docs (/docs)</a>.</p>
<footer><span id="conn"></span> This page updates itself. API clients get 503 with a
Retry-After header and a JSON error until the server is ready.</footer>
</main>"""


def embedded_json(value: Any) -> str:
    """JSON safe inside a <script> element: no `<`, `>` or `&` left as they are."""
    return (
        json.dumps(value, ensure_ascii=True)
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
    )


def page(view: dict[str, Any]) -> str:
    """The whole page for one not-ready view (`{"error": {...}}`)."""
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        "<title>SGLang is loading</title>"
        f"<style>{_STYLE}</style></head><body>\n{_BODY}\n"
        f'<script type="application/json" id="data">{embedded_json(view)}</script>\n'
        f"<script>{_SCRIPT}</script>\n</body></html>\n"
    )
