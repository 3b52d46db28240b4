// The live thermal view of a lab monitor's admin page.
//
// Polls the newest frame with ?live=true while the page is open and visible:
// each poll holds the device's live lease (the server then tells the device to
// send frames fast); when the page closes the polls stop and the lease runs out.
// Loaded as a static file: the admin's Content-Security-Policy allows no inline script.
(function () {
  "use strict";
  var SVG = "http://www.w3.org/2000/svg";
  var CELL = 12;

  function colour(stops, fraction) {
    for (var i = 1; i < stops.length; i++) {
      var f0 = stops[i - 1][0], c0 = stops[i - 1][1], f1 = stops[i][0], c1 = stops[i][1];
      if (fraction <= f1) {
        var t = f1 > f0 ? (fraction - f0) / (f1 - f0) : 0;
        var rgb = [0, 1, 2].map(function (k) { return Math.round(c0[k] + (c1[k] - c0[k]) * t); });
        return "rgb(" + rgb.join(",") + ")";
      }
    }
    return "rgb(255,250,190)";
  }

  function element(name, attributes) {
    var node = document.createElementNS(SVG, name);
    Object.keys(attributes).forEach(function (key) { node.setAttribute(key, attributes[key]); });
    return node;
  }

  function draw(box, stops, frame) {
    var width = frame.width * CELL, height = frame.height * CELL;
    var svg = element("svg", {
      "class": "homepot-heatmap", width: width, height: height + 20,
      viewBox: "0 0 " + width + " " + (height + 20)
    });
    var span = (frame.max - frame.min) || 1, hot = 0;
    frame.values.forEach(function (value, index) {
      if (value > frame.values[hot]) { hot = index; }
      var rect = element("rect", {
        x: (index % frame.width) * CELL, y: Math.floor(index / frame.width) * CELL,
        width: CELL, height: CELL, fill: colour(stops, (value - frame.min) / span)
      });
      var title = element("title", {});
      title.textContent = value.toFixed(1) + " °C";
      rect.appendChild(title);
      svg.appendChild(rect);
    });
    svg.appendChild(element("circle", {
      "class": "homepot-hotspot", cx: (hot % frame.width) * CELL + CELL / 2,
      cy: Math.floor(hot / frame.width) * CELL + CELL / 2, r: CELL,
      fill: "none", stroke: "#00ff66", "stroke-width": 2
    }));
    var caption = element("text", { x: 0, y: height + 15, "font-size": 12 });
    caption.textContent = frame.ts + " · min " + frame.min.toFixed(1) + " °C · max " +
      frame.max.toFixed(1) + " °C";
    svg.appendChild(caption);
    var old = box.querySelector(".homepot-heatmap, .homepot-thermal-waiting");
    if (old) { box.replaceChild(svg, old); } else { box.insertBefore(svg, box.firstChild); }
    var low = box.querySelector(".homepot-scale-low"), high = box.querySelector(".homepot-scale-high");
    if (low && high) {
      low.textContent = frame.min.toFixed(1) + " °C";
      high.textContent = frame.max.toFixed(1) + " °C";
    }
  }

  function start(box) {
    var stops = JSON.parse(box.dataset.stops), url = box.dataset.url;
    var pollMs = parseInt(box.dataset.pollMs, 10) || 1000, lastTs = null;
    function poll() {
      if (document.hidden) { return; } // a hidden tab does not hold the lease
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) { return response.ok ? response.json() : null; })
        .then(function (frame) {
          if (frame && frame.ts !== lastTs) { lastTs = frame.ts; draw(box, stops, frame); }
        })
        .catch(function () { /* the next poll tries again */ });
    }
    poll();
    window.setInterval(poll, pollMs);
  }

  document.addEventListener("DOMContentLoaded", function () {
    var box = document.getElementById("homepot-thermal-live");
    if (box) { start(box); }
  });
})();
