/// The console's stylesheet and script, embedded: the console works with no internet access
/// and the Content-Security-Policy allows nothing from elsewhere (SPEC §13).
enum ConsoleAssets {
    static let css = """
        :root { --fg: #1d232a; --muted: #5b6570; --line: #d8dde3; --bg: #ffffff; --band: #f3f5f7; --accent: #0b5cad;
          --ok: #1a7f37; --bad: #b42318; --warn: #9a6700; font-family: system-ui, -apple-system, "Segoe UI", sans-serif; }
        * { box-sizing: border-box; }
        body { margin: 0; color: var(--fg); background: var(--bg); line-height: 1.45; }
        a { color: var(--accent); }
        a:focus, button:focus, input:focus, select:focus, main:focus { outline: 3px solid #f5a623; outline-offset: 2px; }
        .skip { position: absolute; left: -999px; }
        .skip:focus { left: 8px; top: 8px; background: var(--bg); padding: 4px 8px; z-index: 2; }
        header { background: var(--band); border-bottom: 1px solid var(--line); }
        nav { display: flex; flex-wrap: wrap; gap: 4px 14px; align-items: center; padding: 8px 16px; }
        nav .brand { font-weight: 700; color: var(--fg); text-decoration: none; }
        nav .search { margin-left: auto; display: flex; gap: 6px; align-items: center; }
        nav .search label { position: absolute; left: -999px; }
        main { padding: 12px 16px 40px; max-width: 1200px; }
        main.narrow { max-width: 420px; margin: 10vh auto; }
        h1 { font-size: 1.4rem; margin: 8px 0 12px; word-break: break-all; }
        h2 { font-size: 1.1rem; margin: 24px 0 8px; }
        h3 { font-size: 1rem; margin: 0 0 6px; }
        h4 { font-size: .95rem; margin: 12px 0 6px; }
        .scroll { overflow-x: auto; }
        table { border-collapse: collapse; width: 100%; font-size: .92rem; }
        th, td { text-align: left; padding: 6px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
        thead th { background: var(--band); white-space: nowrap; }
        td.num { text-align: right; font-variant-numeric: tabular-nums; }
        table.headers { width: auto; }
        table.headers th { font-weight: 600; white-space: nowrap; }
        table.headers td { word-break: break-all; }
        .badge { display: inline-block; padding: 0 8px; border-radius: 10px; font-size: .82rem; background: var(--band); border: 1px solid var(--line); }
        .badge.delivered, .badge.ok { color: var(--ok); border-color: var(--ok); }
        .badge.failed, .badge.tripped, .badge.blocked { color: var(--bad); border-color: var(--bad); }
        .badge.paused, .badge.queued, .badge.in_flight { color: var(--warn); border-color: var(--warn); }
        .status.s2xx { color: var(--ok); } .status.s4xx, .status.s5xx { color: var(--bad); }
        .error-text { color: var(--bad); word-break: break-word; }
        .notice { background: #eef6ff; border: 1px solid #b6d4fe; padding: 8px 12px; border-radius: 6px; }
        .error { background: #fdecea; border: 1px solid var(--bad); padding: 8px 12px; border-radius: 6px; }
        .hint, .absolute, .updated { color: var(--muted); font-size: .85rem; }
        form.inline { display: inline; }
        form.filters { display: flex; flex-wrap: wrap; gap: 8px 14px; align-items: end; margin: 8px 0 12px; }
        form.filters label { display: flex; flex-direction: column; font-size: .85rem; color: var(--muted); }
        input, select, button { font: inherit; padding: 4px 8px; border: 1px solid #9aa4ae; border-radius: 4px; background: var(--bg); }
        button { background: var(--band); cursor: pointer; }
        button.danger { border-color: var(--bad); color: var(--bad); }
        main.narrow input { width: 100%; margin: 6px 0 12px; padding: 8px; }
        pre.body { background: var(--band); padding: 10px; overflow-x: auto; white-space: pre-wrap; word-break: break-all; max-height: 32rem; }
        pre.hex { white-space: pre; }
        section.delivery { border: 1px solid var(--line); border-radius: 6px; padding: 10px 12px; margin: 10px 0; }
        ol.timeline { list-style: none; margin: 8px 0; padding: 0 0 0 14px; border-left: 3px solid var(--line); }
        ol.timeline li { margin: 4px 0; position: relative; }
        ol.timeline li::before { content: ""; position: absolute; left: -21px; top: .45em; width: 11px; height: 11px; border-radius: 50%; background: var(--accent); }
        .attempt { font-weight: 600; }
        figure.chart { margin: 0; max-width: 720px; }
        figure.chart svg { width: 100%; height: auto; }
        .axis { stroke: var(--muted); stroke-width: 1; }
        .tick { fill: var(--muted); font-size: 11px; }
        .line { fill: none; stroke-width: 2; }
        .line.accepted { stroke: var(--accent); } .line.delivered { stroke: var(--ok); } .line.failed { stroke: var(--bad); }
        .key::before { content: ""; display: inline-block; width: 12px; height: 3px; margin: 0 4px 3px 0; }
        .key.accepted::before { background: var(--accent); } .key.delivered::before { background: var(--ok); } .key.failed::before { background: var(--bad); }
        .next { display: inline-block; margin-top: 10px; }
        @media (max-width: 600px) { nav .search { margin-left: 0; width: 100%; } nav .search input { flex: 1; } main { padding: 8px; }
          th, td { padding: 4px 6px; } }
        """

    /// Refreshes the element `#live` of the page every `data-refresh` seconds (fetching the
    /// page again; not while something in it has the focus), and `/` focuses the search box.
    static let javaScript = """
        "use strict";
        (function () {
          var live = document.getElementById("live");
          if (live && live.dataset.refresh) {
            var seconds = Math.max(1, parseInt(live.dataset.refresh, 10) || 5);
            setInterval(function () {
              var current = document.getElementById("live");
              if (document.hidden || (current && current.contains(document.activeElement))) { return; }
              fetch(window.location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
                .then(function (response) { return response.ok ? response.text() : null; })
                .then(function (text) {
                  if (!text) { return; }
                  var fresh = new DOMParser().parseFromString(text, "text/html").getElementById("live");
                  var now = document.getElementById("live");
                  if (fresh && now && !now.contains(document.activeElement)) { now.replaceWith(document.importNode(fresh, true)); }
                })
                .catch(function () {});
            }, seconds * 1000);
          }
          document.addEventListener("keydown", function (event) {
            var target = event.target;
            var typing = target && (target.tagName === "INPUT" || target.tagName === "SELECT" || target.tagName === "TEXTAREA");
            if (event.key === "/" && !typing) {
              var find = document.getElementById("find");
              if (find) { event.preventDefault(); find.focus(); }
            }
          });
        })();
        """
}
