/* XRouter UI: the copy button and the usage chart. No dependencies, no build step. */
(function () {
  "use strict";

  var SVG = "http://www.w3.org/2000/svg";

  function copySecret(button) {
    var input = document.getElementById(button.getAttribute("data-copy"));
    var status = document.getElementById("copy-status");
    function done(ok) {
      if (status) {
        status.textContent = button.getAttribute(ok ? "data-copied" : "data-copy-failed");
      }
    }
    input.select();
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(input.value).then(function () { done(true); },
        function () { done(false); });
    } else {
      try { done(document.execCommand("copy")); } catch (error) { done(false); }
    }
  }

  var METRICS = {
    requests: function (p) { return p.requests; },
    tokens: function (p) { return p.total_tokens; },
    cost: function (p) { return p.cost_rub; },
    errors: function (p) { return p.errors; },
    latency: function (p) { return p.average_latency_ms || 0; }
  };

  function formatNumber(value, metric, lang) {
    var digits = metric === "cost" ? 4 : (metric === "latency" ? 0 : 0);
    return Number(value).toLocaleString(lang, {
      minimumFractionDigits: metric === "cost" ? 2 : 0,
      maximumFractionDigits: digits
    });
  }

  // Times are shown at the server's UTC offset, like every other time on the page.
  var ZONE = (function () {
    var box = document.getElementById("usage");
    var hours = box ? parseInt(box.getAttribute("data-offset") || "0", 10) : 0;
    return hours === 0 ? "UTC" : "Etc/GMT" + (hours > 0 ? "-" : "+") + Math.abs(hours);
  }());

  function label(iso, granularity, lang) {
    var date = new Date(iso);
    if (granularity === "day") {
      return date.toLocaleDateString(lang, { month: "short", day: "numeric", timeZone: ZONE });
    }
    if (granularity === "hour") {
      // 48 hours span three dates: the time alone would repeat.
      return date.toLocaleString(lang, { month: "short", day: "numeric", hour: "2-digit",
        minute: "2-digit", timeZone: ZONE });
    }
    return date.toLocaleTimeString(lang, { hour: "2-digit", minute: "2-digit", timeZone: ZONE });
  }

  function element(name, attributes, text) {
    var node = document.createElementNS(SVG, name);
    Object.keys(attributes).forEach(function (key) { node.setAttribute(key, attributes[key]); });
    if (text !== undefined) { node.textContent = text; }
    return node;
  }

  function draw(svg, points, metric, granularity, lang) {
    var width = Math.max(svg.parentNode.clientWidth, 240);
    var height = 220, left = 48, bottom = 24, top = 12;
    var values = points.map(METRICS[metric]);
    var max = Math.max.apply(null, values.concat([0]));
    var scale = max > 0 ? (height - top - bottom) / max : 0;
    var step = (width - left) / Math.max(points.length, 1);
    svg.setAttribute("viewBox", "0 0 " + width + " " + height);
    svg.setAttribute("width", width);
    svg.setAttribute("height", height);
    while (svg.firstChild) { svg.removeChild(svg.firstChild); }
    svg.appendChild(element("line", { x1: left, y1: height - bottom, x2: width,
      y2: height - bottom, "class": "axis" }));
    svg.appendChild(element("text", { x: left - 6, y: top + 8, "text-anchor": "end",
      "class": "tick" }, formatNumber(max, metric, lang)));
    svg.appendChild(element("text", { x: left - 6, y: height - bottom, "text-anchor": "end",
      "class": "tick" }, "0"));
    values.forEach(function (value, index) {
      var barHeight = value * scale;
      var bar = element("rect", {
        x: left + index * step + step * 0.15,
        y: height - bottom - barHeight,
        width: Math.max(step * 0.7, 1),
        height: Math.max(barHeight, value > 0 ? 1 : 0),
        "class": metric === "errors" ? "column column-error" : "column"
      });
      bar.appendChild(element("title", {}, label(points[index].start, granularity, lang) +
        ": " + formatNumber(value, metric, lang)));
      svg.appendChild(bar);
    });
    [[0, "start"], [Math.floor(points.length / 2), "middle"], [points.length - 1, "end"]]
      .forEach(function (pair) {
        var index = pair[0];
        if (index < 0 || index >= points.length) { return; }
        var x = pair[1] === "start" ? left : (pair[1] === "end" ? width :
          left + index * step + step / 2);
        svg.appendChild(element("text", { x: x, y: height - 6, "text-anchor": pair[1],
          "class": "tick" }, label(points[index].start, granularity, lang)));
      });
  }

  function fillTable(table, points, granularity, lang) {
    var body = table.tBodies[0];
    while (body.firstChild) { body.removeChild(body.firstChild); }
    points.filter(function (p) { return p.requests > 0; }).forEach(function (point) {
      var row = body.insertRow();
      var head = document.createElement("th");
      head.scope = "row";
      head.textContent = new Date(point.start).toLocaleString(lang, { timeZone: ZONE });
      row.appendChild(head);
      ["requests", "tokens", "cost", "errors", "latency"].forEach(function (metric) {
        row.insertCell().textContent = formatNumber(METRICS[metric](point), metric, lang);
      });
    });
  }

  function startChart(box) {
    var svg = document.getElementById("usage-chart");
    var status = document.getElementById("usage-status");
    var granularity = document.getElementById("granularity");
    var metric = document.getElementById("metric");
    var lang = box.getAttribute("data-lang") || "en";
    var last = null;

    function render() {
      if (!last) { return; }
      draw(svg, last.data, metric.value, last.granularity, lang);
      fillTable(document.getElementById("usage-table"), last.data, last.granularity, lang);
      var totals = last.totals;
      var shown = { requests: totals.requests, tokens: totals.total_tokens,
        cost: totals.cost_rub, errors: totals.errors, latency: totals.average_latency_ms || 0 };
      Object.keys(shown).forEach(function (name) {
        var cell = box.querySelector('[data-total="' + name + '"]');
        if (cell) { cell.textContent = formatNumber(shown[name], name, lang); }
      });
    }

    function load() {
      var url = box.getAttribute("data-url") + "?granularity=" + granularity.value;
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) {
          if (!response.ok) { throw new Error(String(response.status)); }
          return response.json();
        })
        .then(function (body) {
          last = body;
          status.textContent = "";
          box.setAttribute("data-loaded", String(Date.now()));
          render();
        })
        .catch(function () { status.textContent = box.getAttribute("data-failed"); });
    }

    granularity.addEventListener("change", load);
    metric.addEventListener("change", render);
    document.getElementById("usage-refresh").addEventListener("click", load);
    window.addEventListener("resize", render);
    load();
    window.setInterval(function () {
      if (!document.hidden) { load(); }
    }, 10000);
  }

  document.querySelectorAll("[data-copy]").forEach(function (button) {
    button.addEventListener("click", function () { copySecret(button); });
    // Shown only once it works: before this script runs, a click would do nothing.
    button.hidden = false;
  });
  var box = document.getElementById("usage");
  if (box) { startChart(box); }
}());
