// The fleet dashboard (the admin's first page): keeps cards, device grid and
// event feed current without reload, and shows toasts for what just happened.
//
// Polls the dashboard's poll URL every data-poll-ms with the fingerprint of what
// it shows and its place in the event feed (the cursor). The server answers 204
// when nothing changed (cheap: 50 open dashboards cost the server little), else
// JSON with the re-rendered fragments, the new fingerprint and cursor, and toasts.
// The page's own query string (site/type/status/page) goes along, so the grid
// stays the filtered page the operator is looking at. Polling pauses while the
// tab is hidden. A static file: the Content-Security-Policy allows no inline script.
(function () {
  "use strict";
  var TOAST_MS = 8000;

  function replace(id, html) {
    var node = document.getElementById(id);
    if (node && typeof html === "string") { node.innerHTML = html; }
  }

  function toast(box, item) {
    var node = document.createElement("div");
    node.className = "dashboard-toast toast-" + item.level;
    node.setAttribute("role", "status");
    node.dataset.kind = item.kind;
    node.textContent = item.text;
    box.appendChild(node);
    window.setTimeout(function () { node.remove(); }, TOAST_MS);
  }

  function start(root) {
    var state = { fingerprint: root.dataset.fingerprint, cursor: root.dataset.cursor };
    var interval = parseInt(root.dataset.pollMs, 10) || 3000;
    var toasts = document.getElementById("dashboard-toasts");
    var busy = false;

    function url() {
      var params = new URLSearchParams(window.location.search);
      params.set("fp", state.fingerprint);
      params.set("cursor", state.cursor);
      return root.dataset.pollUrl + "?" + params.toString();
    }

    function apply(answer) {
      state.fingerprint = answer.fingerprint;
      state.cursor = answer.cursor;
      replace("dashboard-cards", answer.html.cards);
      replace("dashboard-grid", answer.html.grid);
      replace("dashboard-feed", answer.html.feed);
      answer.toasts.forEach(function (item) { toast(toasts, item); });
    }

    function poll() {
      if (busy || document.hidden) { return; }
      busy = true;
      fetch(url(), { credentials: "same-origin", cache: "no-store",
                     headers: { "Accept": "application/json" } })
        .then(function (response) {
          if (response.status === 204) { return null; }
          if (!response.ok) { throw new Error("poll answered " + response.status); }
          return response.json();
        })
        .then(function (answer) { if (answer) { apply(answer); } })
        .catch(function (error) { root.dataset.pollError = String(error); })
        .then(function () { busy = false; });
    }

    window.setInterval(poll, interval);
    document.addEventListener("visibilitychange", poll);
  }

  document.addEventListener("DOMContentLoaded", function () {
    var root = document.getElementById("homepot-dashboard");
    if (root) { start(root); }
  });
})();
