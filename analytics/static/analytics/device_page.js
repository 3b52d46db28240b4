// Keeps the device page live without a reload.
//
// Each panel with data-homepot-live-url is fetched again every data-homepot-poll-ms
// while the page is visible; in the answer, every element marked data-homepot-live
// replaces the element with the same id on the page. Only those parts change, so
// forms and inputs being filled in are left alone.
// Loaded as a static file: the admin's Content-Security-Policy allows no inline script.
(function () {
  "use strict";
  if (window.homepotDevicePage) { return; }  // panels include this script more than once
  window.homepotDevicePage = true;

  function swap(panel, html) {
    var answer = new DOMParser().parseFromString(html, "text/html");
    answer.querySelectorAll("[data-homepot-live][id]").forEach(function (fresh) {
      var current = panel.querySelector("#" + CSS.escape(fresh.id));
      if (current) { current.replaceWith(document.importNode(fresh, true)); }
    });
  }

  function poll(panel) {
    var url = panel.getAttribute("data-homepot-live-url");
    var every = parseInt(panel.getAttribute("data-homepot-poll-ms"), 10) || 5000;
    var busy = false;
    window.setInterval(function () {
      if (busy || document.hidden) { return; }
      busy = true;
      fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (response) { return response.ok ? response.text() : null; })
        .then(function (html) { if (html !== null) { swap(panel, html); } })
        .catch(function () { /* the next poll tries again */ })
        .then(function () { busy = false; });
    }, every);
  }

  function start() {
    document.querySelectorAll("[data-homepot-live-url]").forEach(poll);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
