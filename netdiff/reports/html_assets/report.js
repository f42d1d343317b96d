/* netdiff HTML report: renders the embedded JSON payload. No dependencies, no network.
   All data reaches the DOM through textContent / setAttribute, never as markup. */
(function () {
  "use strict";
  var errors = [];
  function showErrors() {
    var box = document.getElementById("errors");
    if (!box) return;
    box.hidden = false;
    box.textContent = "This report hit a script error: " + errors.join(" | ");
  }
  window.addEventListener("error", function (e) { errors.push(String(e.message || e.type)); showErrors(); });
  window.addEventListener("unhandledrejection", function (e) { errors.push("unhandled rejection: " + String(e.reason)); showErrors(); });

  var SVGNS = "http://www.w3.org/2000/svg";
  var data = JSON.parse(document.getElementById("netdiff-data").textContent);
  var L = data.layers;
  var TH = data.thresholds;
  var state = { sel: -1, sortKey: "i", sortDir: 1, filter: "", status: "all" };
  var views = { rows: [], points: {}, nodes: {}, graphEdges: [] };

  /* ---------- helpers ---------- */
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function sv(tag, attrs, text) {
    var e = document.createElementNS(SVGNS, tag);
    for (var k in attrs) if (Object.prototype.hasOwnProperty.call(attrs, k)) e.setAttribute(k, String(attrs[k]));
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function tip(node, text) { node.appendChild(sv("title", {}, text)); return node; }
  function isNum(v) { return typeof v === "number" && isFinite(v); }
  function metric(layer, key) { return layer.m && isNum(layer.m[key]) ? layer.m[key] : null; }
  function fmt(v, kind) {
    if (v === null || v === undefined) return "–";
    if (typeof v !== "number") return String(v);
    if (v >= 1e308) return "∞";
    if (v <= -1e308) return "−∞";
    if (kind === "cos") return v.toFixed(6);
    if (kind === "db") return v.toFixed(1);
    if (kind === "int") return String(Math.round(v));
    if (kind === "gain") return v.toFixed(1) + "×";
    var a = Math.abs(v);
    if (a === 0) return "0";
    if (a >= 1e5 || a < 1e-3) return v.toExponential(2);
    return String(Number(v.toPrecision(4)));
  }
  function label(i) { return L[i].lb || L[i].name; }
  function midTrim(text, n) {
    text = String(text);
    if (text.length <= n) return text;
    var head = Math.ceil((n - 1) / 2);
    return text.slice(0, head) + "…" + text.slice(text.length - (n - 1 - head));
  }
  /* a label shortened to n characters: middle path segments go first (the first one tells layers
     apart, the last one names the op), then characters from the middle */
  function fitLabel(text, n) {
    text = String(text);
    if (text.length <= n) return text;
    var segs = text.split("/");
    if (segs.length > 2) {
      var head = [segs[0]], tail = segs[segs.length - 1];
      for (var k = 1; k < segs.length - 1; k++) {
        if ((head.concat([segs[k]]).join("/") + "/…/" + tail).length > n) break;
        head.push(segs[k]);
      }
      var joined = head.join("/") + "/…/" + tail;
      if (joined.length <= n) return joined;
    }
    if (segs.length > 2) {
      var front = segs.slice(0, 2).join("/") + "/…";
      if (front.length <= n) return front;
    }
    return midTrim(text, n);
  }
  /* the name as text with line-break opportunities after separators: wraps at / _ . : - , never mid-word */
  function breakable(node, text) {
    String(text).replace(/([\/_.:\-])/g, "$1\u0000").split("\u0000").forEach(function (part, k) {
      if (k) node.appendChild(document.createElement("wbr"));
      node.appendChild(document.createTextNode(part));
    });
    return node;
  }
  /* round tick values: a step of 1, 2 or 5 × 10^k giving about `count` intervals over [lo, hi] */
  function niceTicks(lo, hi, count) {
    var raw = Math.max((hi - lo) / count, 1e-12), mag = Math.pow(10, Math.floor(Math.log10(raw)));
    var step = [1, 2, 5, 10].map(function (m) { return m * mag; }).filter(function (v) { return v >= raw * 0.999; })[0];
    var start = Math.floor(lo / step + 1e-9) * step, end = Math.ceil(hi / step - 1e-9) * step, ticks = [];
    for (var v = start; v <= end + step * 1e-6; v += step) ticks.push(Number(v.toFixed(12)));
    return { lo: start, hi: end, step: step, ticks: ticks, digits: Math.max(0, -Math.floor(Math.log10(step) + 1e-9)) };
  }
  function opLabel(op) {
    var s = String(op || "tensor").replace("Normalization", "Norm").replace("Average", "Avg");
    return s.length > 17 ? s.slice(0, 16) + "…" : s;
  }
  function statusLabel(s) { return String(s).replace(/_/g, " "); }
  function pill(text, cls) { return el("span", "pill " + cls, text); }
  function failsCos(v) { return v !== null && v < TH.cosine; }
  function click(node) { node.dispatchEvent(new MouseEvent("click", { bubbles: true, cancelable: true, view: window })); }

  /* ---------- chart: cosine and SQNR over depth ---------- */
  var chartSlots = [];
  L.forEach(function (layer, i) { if (layer.status !== "missing_in_reference") chartSlots.push(i); });

  function drawChart() {
    var host = document.getElementById("chart");
    host.textContent = "";
    views.points = {};
    var W = Math.max(480, host.clientWidth || 960), H = 330, ml = 62, mr = 56, mt = 22, mb = 100;
    var pw = W - ml - mr, ph = H - mt - mb;
    var s = sv("svg", { width: W, height: H, viewBox: "0 0 " + W + " " + H, role: "img", "aria-label": "cosine and SQNR per layer" });
    host.appendChild(s);
    var cos = chartSlots.map(function (i) { return metric(L[i], "cosine"); });
    var sq = chartSlots.map(function (i) { var v = metric(L[i], "sqnr_db"); return v !== null && Math.abs(v) < 1e300 ? v : null; });
    var known = cos.filter(function (v) { return v !== null; });
    if (!known.length) { host.appendChild(el("p", "empty", "No layer could be compared, so there is nothing to plot.")); s.remove(); return; }
    var lo = Math.min(TH.cosine, Math.min.apply(null, known)), span = 1 - lo;
    var cosTicks = niceTicks(Math.max(-1, lo - Math.max(span * 0.05, 0.001)), 1, 4);
    lo = cosTicks.lo;
    var sqKnown = sq.filter(function (v) { return v !== null; });
    var sqTicks = niceTicks(sqKnown.length ? Math.min(0, Math.min.apply(null, sqKnown)) : 0,
      sqKnown.length ? Math.max(1, Math.max.apply(null, sqKnown)) : 60, 4);
    var sLo = sqTicks.lo, sHi = sqTicks.hi;
    var n = chartSlots.length;
    function X(k) { return ml + (n === 1 ? pw / 2 : (k * pw) / (n - 1)); }
    function Y(v) { return mt + ((1 - v) / (1 - lo)) * ph; }
    function YS(v) { return mt + ((sHi - v) / (sHi - sLo)) * ph; }
    var grid = sv("g", { "class": "grid" }), axis = sv("g", { "class": "axis" });
    cosTicks.ticks.forEach(function (v) {
      var y = Y(v);
      grid.appendChild(sv("line", { x1: ml, x2: W - mr, y1: y, y2: y }));
      axis.appendChild(sv("text", { "class": "ytick", x: ml - 6, y: y + 4, "text-anchor": "end" }, v.toFixed(cosTicks.digits)));
    });
    sqTicks.ticks.forEach(function (v) {
      axis.appendChild(sv("text", { "class": "ytick2", x: W - mr + 6, y: YS(v) + 4, "text-anchor": "start", fill: "#8a63d2" }, v.toFixed(sqTicks.digits)));
    });
    /* x axis: the layers' distinguishing names, slanted 40°; as many as fit 18 px apart (12 px between lines) */
    var every = Math.max(1, Math.ceil(n / Math.max(1, Math.floor(pw / 18)))), xl = sv("g", { "class": "xlabels" });
    for (var k = 0; k < n; k += every) {
      var i0 = chartSlots[k], x0 = X(k), y0 = mt + ph + 12, room = Math.min(22, Math.floor((x0 - 4) / 4.6));
      xl.appendChild(sv("line", { x1: x0, x2: x0, y1: mt + ph, y2: mt + ph + 4, stroke: "#afb8c1" }));
      var xt = sv("text", { "class": "xlabel", "data-index": i0, x: x0, y: y0, "text-anchor": "end", "font-size": 10,
        transform: "rotate(-40 " + x0 + " " + y0 + ")" }, fitLabel(label(i0), Math.max(4, room)));
      xl.appendChild(tip(xt, "#" + i0 + " " + L[i0].name));
      xt.addEventListener("click", (function (i) { return function () { select(i, "chart"); }; })(i0));
    }
    axis.appendChild(xl);
    axis.appendChild(sv("text", { x: 14, y: mt + ph / 2, transform: "rotate(-90 14 " + (mt + ph / 2) + ")", "text-anchor": "middle" }, "cosine"));
    axis.appendChild(sv("text", { x: W - 10, y: mt + ph / 2, transform: "rotate(90 " + (W - 10) + " " + (mt + ph / 2) + ")", "text-anchor": "middle", fill: "#8a63d2" }, "SQNR dB"));
    s.appendChild(grid);
    s.appendChild(axis);
    chartSlots.forEach(function (i, k) {
      if (L[i].origin) {
        s.appendChild(sv("line", { x1: X(k), x2: X(k), y1: mt, y2: mt + ph, stroke: "#cf222e", "stroke-dasharray": "3 3", "stroke-opacity": 0.7 }));
        s.appendChild(sv("text", { x: X(k) + 4, y: mt - 8, fill: "#cf222e", "font-size": 11, "font-weight": 600, "text-anchor": k > n * 0.7 ? "end" : "start" },
          "origin: " + (L[i].op ? L[i].op + " " : "") + fitLabel(label(i), 28)));
      }
    });
    var ty = Y(TH.cosine);
    s.appendChild(sv("line", { x1: ml, x2: W - mr, y1: ty, y2: ty, stroke: "#cf222e", "stroke-width": 1.2, "stroke-dasharray": "6 4" }));
    s.appendChild(sv("text", { x: W - mr - 4, y: ty - 5, "text-anchor": "end", fill: "#cf222e", "font-size": 11 }, "threshold " + TH.cosine));
    function line(values, yf, color, dash) {
      var d = "", pen = false;
      values.forEach(function (v, k) {
        if (v === null) { pen = false; return; }
        d += (pen ? "L" : "M") + X(k).toFixed(1) + " " + yf(v).toFixed(1);
        pen = true;
      });
      if (d) s.appendChild(sv("path", { d: d, fill: "none", stroke: color, "stroke-width": 1.8, "stroke-dasharray": dash || "none", "stroke-linejoin": "round" }));
    }
    line(sq, YS, "#8a63d2", "4 3");
    line(cos, Y, "#0969da");
    var r = n > 120 ? 3 : 4;
    chartSlots.forEach(function (i, k) {
      var layer = L[i], c = cos[k];
      var g = sv("g", { "class": "pt", "data-index": i });
      var cy = c === null ? mt + ph : Y(c);
      if (sq[k] !== null) g.appendChild(sv("circle", { cx: X(k), cy: YS(sq[k]), r: 2.2, fill: "#8a63d2", "fill-opacity": 0.8 }));
      g.appendChild(sv("circle", { "class": "hit", cx: X(k), cy: cy, r: 9, fill: "transparent" }));
      var fill = c === null ? "#d0d7de" : (layer.status === "diverged" ? "#cf222e" : (layer.status === "noisy" ? "#1b7c9c" : "#1a7f37"));
      g.appendChild(sv("circle", { "class": "dot", cx: X(k), cy: cy, r: layer.origin ? r + 2 : r, fill: fill, stroke: layer.origin ? "#82071e" : "#fff", "stroke-width": layer.origin ? 2 : 1 }));
      tip(g, "#" + i + " " + layer.name + (layer.op ? " (" + layer.op + ")" : "") + "\ncosine " + fmt(c, "cos") + "\nSQNR " + fmt(metric(layer, "sqnr_db"), "db") + " dB\nstatus " + statusLabel(layer.status));
      g.addEventListener("click", function () { select(i, "chart"); });
      s.appendChild(g);
      views.points[i] = g;
    });
    markChart();
  }
  function markChart() {
    for (var i in views.points) {
      var dot = views.points[i].querySelector(".dot");
      var on = Number(i) === state.sel;
      dot.setAttribute("r", on ? 7 : (L[i].origin ? (chartSlots.length > 120 ? 5 : 6) : (chartSlots.length > 120 ? 3 : 4)));
      dot.setAttribute("stroke", on ? "#0969da" : (L[i].origin ? "#82071e" : "#fff"));
      dot.setAttribute("stroke-width", on ? 3 : (L[i].origin ? 2 : 1));
    }
  }

  /* ---------- layer table ---------- */
  var hasIso = L.some(function (l) { return l.iso && isNum(l.iso.cosine); });
  var COLS = [
    { key: "i", label: "#", num: true, get: function (l, i) { return i; } },
    { key: "name", label: "Layer", get: function (l) { return l.name; } },
    { key: "op", label: "Op", get: function (l) { return l.op || ""; } },
    { key: "status", label: "Status", get: function (l) { return l.status; } },
    { key: "cosine", label: "cosine", num: true, kind: "cos", get: function (l) { return metric(l, "cosine"); } },
    { key: "rel_l2", label: "rel_l2", num: true, get: function (l) { return metric(l, "rel_l2"); } },
    { key: "sqnr_db", label: "SQNR dB", num: true, kind: "db", get: function (l) { return metric(l, "sqnr_db"); } },
    { key: "max_abs", label: "max_abs", num: true, minor: true, get: function (l) { return metric(l, "max_abs"); } },
    { key: "gain", label: "gain", num: true, minor: true, kind: "gain", get: function (l) { return isNum(l.gain) ? l.gain : null; } }
  ];
  if (hasIso) COLS.push({ key: "iso", label: "isolated", num: true, kind: "cos", get: function (l) { return l.iso && isNum(l.iso.cosine) ? l.iso.cosine : null; } });

  function buildTable() {
    var head = document.querySelector("#layer-table thead"), body = document.querySelector("#layer-table tbody");
    var tr = el("tr");
    COLS.forEach(function (c) {
      var th = el("th", (c.num ? "num" : "") + (c.minor ? " minor" : ""), c.label);
      th.setAttribute("data-key", c.key);
      th.setAttribute("tabindex", "0");
      th.setAttribute("title", "sort by " + c.label + " (Enter)");
      th.appendChild(el("span", "arrow", ""));
      function sortBy() {
        if (state.sortKey === c.key) state.sortDir = -state.sortDir; else { state.sortKey = c.key; state.sortDir = 1; }
        renderRows();
      }
      th.addEventListener("click", sortBy);
      th.addEventListener("keydown", function (e) { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sortBy(); } });
      tr.appendChild(th);
    });
    head.appendChild(tr);
    L.forEach(function (layer, i) {
      var row = el("tr", layer.origin ? "origin" : "");
      row.setAttribute("data-index", i);
      row.setAttribute("tabindex", "-1");
      row.setAttribute("aria-selected", "false");
      COLS.forEach(function (c) {
        var v = c.get(layer, i), td;
        if (c.key === "name") {
          td = el("td", "name");
          td.appendChild(breakable(el("span", "nm"), layer.name));
          if (layer.origin) { td.appendChild(document.createTextNode(" ")); td.appendChild(pill("origin", "badge-origin")); }
          if (layer.target) row.setAttribute("title", "target tensor: " + layer.target);
        } else if (c.key === "status") {
          td = el("td");
          td.appendChild(pill(statusLabel(layer.status), "s-" + layer.status));
        } else if (c.key === "op") {
          td = el("td", "op", v ? opLabel(v) : "");
          if (v) td.setAttribute("title", v);
        } else {
          td = el("td", "num" + (c.minor ? " minor" : "") + ((c.key === "cosine" || c.key === "iso") && failsCos(v) ? " bad" : "") + (c.key === "rel_l2" && v !== null && v > TH.rel_l2 ? " bad" : ""), c.key === "i" ? v : fmt(v, c.kind));
        }
        row.appendChild(td);
      });
      row.addEventListener("click", function () { select(i, "table"); });
      views.rows[i] = row;
    });
    body.addEventListener("keydown", rowKeys);
    var sel = document.getElementById("status-filter");
    var opts = [["all", "All statuses"], ["problems", "Not ok"]];
    Object.keys(data.counts).forEach(function (s) { if (data.counts[s]) opts.push([s, statusLabel(s) + " (" + data.counts[s] + ")"]); });
    opts.forEach(function (o) { var op = el("option", "", o[1]); op.value = o[0]; sel.appendChild(op); });
    sel.addEventListener("change", function () { state.status = sel.value; renderRows(); });
    var filt = document.getElementById("filter");
    filt.addEventListener("input", function () { state.filter = filt.value; renderRows(); });
    renderRows();
  }
  /* keyboard: Tab reaches the selected row; arrows, Page keys, Home and End move the selection */
  function rowKeys(e) {
    var rows = Array.prototype.slice.call(document.querySelectorAll("#layer-table tbody tr"));
    var at = rows.indexOf(document.activeElement), to = -1, page = 10;
    if (at < 0) return;
    if (e.key === "ArrowDown" || e.key === "j") to = Math.min(rows.length - 1, at + 1);
    else if (e.key === "ArrowUp" || e.key === "k") to = Math.max(0, at - 1);
    else if (e.key === "PageDown") to = Math.min(rows.length - 1, at + page);
    else if (e.key === "PageUp") to = Math.max(0, at - page);
    else if (e.key === "Home") to = 0;
    else if (e.key === "End") to = rows.length - 1;
    else if (e.key === "Enter" || e.key === " ") to = at;
    if (to < 0) return;
    e.preventDefault();
    select(Number(rows[to].getAttribute("data-index")), "keyboard");
    rows[to].focus();
  }
  function visible(layer) {
    if (state.status === "problems" && layer.status === "ok") return false;
    if (state.status !== "all" && state.status !== "problems" && layer.status !== state.status) return false;
    var q = state.filter.trim().toLowerCase();
    if (!q) return true;
    return [layer.name, layer.op || "", layer.target || "", layer.status].some(function (s) { return String(s).toLowerCase().indexOf(q) >= 0; });
  }
  function renderRows() {
    var body = document.querySelector("#layer-table tbody");
    var col = COLS.filter(function (c) { return c.key === state.sortKey; })[0] || COLS[0];
    var order = L.map(function (l, i) { return i; });
    order.sort(function (a, b) {
      var va = col.get(L[a], a), vb = col.get(L[b], b);
      if (va === null && vb === null) return a - b;
      if (va === null) return 1;
      if (vb === null) return -1;
      var c = typeof va === "number" ? va - vb : String(va).localeCompare(String(vb));
      return c !== 0 ? c * state.sortDir : a - b;
    });
    body.textContent = "";
    var shown = 0, first = -1;
    order.forEach(function (i) { if (visible(L[i])) { body.appendChild(views.rows[i]); shown++; if (first < 0) first = i; } });
    /* one row is in the tab order: the selected one when shown, else the first shown */
    var tab = views.rows[state.sel] && views.rows[state.sel].parentNode ? state.sel : first;
    views.rows.forEach(function (r, k) { r.setAttribute("tabindex", k === tab ? "0" : "-1"); });
    document.getElementById("row-count").textContent = shown + " of " + L.length + " layers";
    document.querySelectorAll("#layer-table th").forEach(function (th) {
      th.querySelector(".arrow").textContent = th.getAttribute("data-key") === state.sortKey ? (state.sortDir > 0 ? "▲" : "▼") : "";
    });
  }

  /* ---------- detail panel ---------- */
  function kv(dl, k, v, mono) { dl.appendChild(el("dt", "", k)); dl.appendChild(el("dd", mono ? "mono" : "", v)); }
  function metricBox(host, label, v, kind, bad) {
    var b = el("div", "metric" + (bad ? " bad" : ""));
    b.appendChild(el("div", "k", label));
    b.appendChild(el("div", "v", fmt(v, kind)));
    host.appendChild(b);
  }
  function axisLabels(s, W, H, lo, hi) {
    s.appendChild(sv("text", { x: 2, y: H - 2, "font-size": 10, fill: "#59636e" }, fmt(lo)));
    s.appendChild(sv("text", { x: W - 2, y: H - 2, "font-size": 10, fill: "#59636e", "text-anchor": "end" }, fmt(hi)));
  }
  function histogram(h) {
    var W = 340, H = 120, top = 6, bottom = 16, n = h.r.length;
    var s = sv("svg", { "class": "plot", width: W, height: H, viewBox: "0 0 " + W + " " + H });
    var peak = Math.max(1, Math.max.apply(null, h.r), Math.max.apply(null, h.t));
    var bw = W / n, ph = H - top - bottom;
    h.r.forEach(function (c, k) {
      var bh = (c / peak) * ph;
      s.appendChild(tip(sv("rect", { x: k * bw + 0.5, y: top + ph - bh, width: Math.max(1, bw - 1), height: bh, fill: "#0969da", "fill-opacity": 0.35 }), "reference: " + c));
    });
    var d = "";
    h.t.forEach(function (c, k) {
      var y = top + ph - (c / peak) * ph;
      d += (k ? "L" : "M") + (k * bw).toFixed(1) + " " + y.toFixed(1) + "L" + ((k + 1) * bw).toFixed(1) + " " + y.toFixed(1);
    });
    s.appendChild(sv("path", { d: d, fill: "none", stroke: "#e16f24", "stroke-width": 1.6 }));
    s.appendChild(sv("line", { x1: 0, x2: W, y1: top + ph, y2: top + ph, stroke: "#d1d9e0" }));
    axisLabels(s, W, H, h.e[0], h.e[1]);
    return s;
  }
  function errorHistogram(h) {
    var W = 340, H = 100, top = 6, bottom = 16, n = h.c.length;
    var s = sv("svg", { "class": "plot", width: W, height: H, viewBox: "0 0 " + W + " " + H });
    var peak = Math.max(1, Math.max.apply(null, h.c)), bw = W / n, ph = H - top - bottom;
    h.c.forEach(function (c, k) {
      var bh = (c / peak) * ph;
      s.appendChild(tip(sv("rect", { x: k * bw + 0.5, y: top + ph - bh, width: Math.max(1, bw - 1), height: bh, fill: "#6e7781" }), c + " values"));
    });
    if (h.e[0] < 0 && h.e[1] > 0) {
      var zx = (-h.e[0] / (h.e[1] - h.e[0])) * W;
      s.appendChild(sv("line", { x1: zx, x2: zx, y1: top, y2: top + ph, stroke: "#1a7f37", "stroke-dasharray": "3 2" }));
      s.appendChild(sv("text", { x: zx + 3, y: top + 9, "font-size": 10, fill: "#1a7f37" }, "0"));
    }
    s.appendChild(sv("line", { x1: 0, x2: W, y1: top + ph, y2: top + ph, stroke: "#d1d9e0" }));
    axisLabels(s, W, H, h.e[0], h.e[1]);
    return s;
  }
  function channelBars(cc) {
    var W = 340, H = 96, top = 4, bottom = 14, n = cc.length;
    var vals = cc.filter(isNum);
    var lo = Math.min(TH.cosine, vals.length ? Math.min.apply(null, vals) : 0);
    lo = Math.max(-1, lo - Math.max((1 - lo) * 0.1, 0.001));
    var s = sv("svg", { "class": "plot", width: W, height: H, viewBox: "0 0 " + W + " " + H });
    var bw = W / n, ph = H - top - bottom, worst = -1, wv = 2;
    cc.forEach(function (c, k) { if (isNum(c) && c < wv) { wv = c; worst = k; } });
    cc.forEach(function (c, k) {
      var v = isNum(c) ? c : lo, bh = ((v - lo) / (1 - lo)) * ph;
      var bad = !isNum(c) || c < TH.cosine;
      s.appendChild(tip(sv("rect", { x: k * bw, y: top + ph - bh, width: Math.max(0.8, bw - (bw > 3 ? 1 : 0)), height: Math.max(1, bh), fill: bad ? "#cf222e" : "#4ac26b" }),
        "channel " + k + ": cosine " + fmt(isNum(c) ? c : null, "cos")));
    });
    var ty = top + ph - ((TH.cosine - lo) / (1 - lo)) * ph;
    s.appendChild(sv("line", { x1: 0, x2: W, y1: ty, y2: ty, stroke: "#cf222e", "stroke-dasharray": "4 3" }));
    s.appendChild(sv("text", { x: 2, y: H - 2, "font-size": 10, fill: "#59636e" }, "ch 0"));
    s.appendChild(sv("text", { x: W - 2, y: H - 2, "font-size": 10, fill: "#59636e", "text-anchor": "end" }, "ch " + (n - 1) + " · axis " + lo.toFixed(3) + "–1"));
    return { svg: s, worst: worst, worstValue: wv };
  }
  function heatColor(t) {
    var stops = [[255, 255, 255], [255, 224, 130], [244, 109, 67], [165, 0, 38], [50, 0, 20]];
    var x = Math.min(0.9999, Math.max(0, t)) * (stops.length - 1), k = Math.floor(x), f = x - k;
    return stops[k].map(function (c, j) { return Math.round(c + (stops[k + 1][j] - c) * f); });
  }
  function heatmap(hm) {
    var wrap = el("div", "heat");
    var cv = document.createElement("canvas");
    cv.width = hm.cols; cv.height = hm.rows;
    var ctx = cv.getContext("2d");
    if (ctx) {
      var img = ctx.createImageData(hm.cols, hm.rows), raw = atob(hm.q);
      for (var k = 0; k < raw.length && k < hm.cols * hm.rows; k++) {
        var q = raw.charCodeAt(k), rgb = q === 255 ? [255, 0, 255] : heatColor(q / 254);
        img.data[4 * k] = rgb[0]; img.data[4 * k + 1] = rgb[1]; img.data[4 * k + 2] = rgb[2]; img.data[4 * k + 3] = 255;
      }
      ctx.putImageData(img, 0, 0);
    }
    if (hm.cols !== hm.rows) cv.style.height = Math.round(168 * hm.rows / hm.cols) + "px";
    wrap.appendChild(cv);
    var cap = el("div", "small muted");
    cap.appendChild(el("div", "", "|target − reference| of channel " + hm.ch + " (the worst), first batch item"));
    if (hm.shape) cap.appendChild(el("div", "", hm.shape.join("×") + " pooled by max to " + hm.rows + "×" + hm.cols));
    cap.appendChild(el("div", "", "white = 0, dark red = " + fmt(hm.max)));
    cap.appendChild(el("div", "", "magenta = NaN/Inf"));
    wrap.appendChild(cap);
    return wrap;
  }
  function renderDetail(i) {
    var host = document.getElementById("detail"), layer = L[i];
    host.textContent = "";
    var head = el("div", "detail-head");
    head.appendChild(el("div", "small muted", "Layer #" + i + (layer.lb ? " · " + layer.lb : "")));
    var h3 = breakable(el("h3"), layer.name);
    h3.id = "detail-name";
    head.appendChild(h3);
    var pills = el("div", "pills");
    pills.appendChild(pill(statusLabel(layer.status), "s-" + layer.status));
    if (layer.op) pills.appendChild(pill(layer.op, "s-not_observable"));
    if (layer.origin) pills.appendChild(pill(layer.name === data.first ? "first divergence" : "origin", "badge-origin"));
    head.appendChild(pills);
    host.appendChild(head);
    var dl = el("dl", "kv");
    if (layer.target) kv(dl, "Target tensor", layer.target, true);
    if (layer.node) kv(dl, "Node", layer.node, true);
    if (layer.shape) kv(dl, "Shape", "[" + layer.shape.join(", ") + "]");
    if (layer.tshape) kv(dl, "Target shape", "[" + layer.tshape.join(", ") + "]" + (layer.layout && layer.layout !== "none" ? "  (" + layer.layout + ")" : ""));
    if (layer.method) kv(dl, "Aligned by", layer.method + (layer.why ? " — " + layer.why : ""));
    if (layer.inputs) kv(dl, "Inputs", layer.inputs.map(function (k) { return L[k].name; }).join(", "), true);
    if (layer.reason) kv(dl, "Reason", layer.reason);
    host.appendChild(dl);
    if (layer.m) {
      var mg = el("div", "metrics");
      metricBox(mg, "cosine", layer.m.cosine, "cos", failsCos(layer.m.cosine));
      metricBox(mg, "rel_l2", layer.m.rel_l2, "", layer.status === "diverged" && isNum(layer.m.rel_l2) && layer.m.rel_l2 > TH.rel_l2);
      if (isNum(layer.exp)) metricBox(mg, "expected rel_l2", layer.exp);
      metricBox(mg, "SQNR dB", layer.m.sqnr_db, "db");
      metricBox(mg, "max_abs", layer.m.max_abs);
      metricBox(mg, "mean_abs", layer.m.mean_abs);
      metricBox(mg, "rmse", layer.m.rmse);
      metricBox(mg, "max_rel", layer.m.max_rel);
      metricBox(mg, "KL", layer.m.kl);
      if (isNum(layer.gain)) metricBox(mg, "error gain", layer.gain, "gain", layer.gain > 4);
      host.appendChild(mg);
      host.appendChild(el("div", "sub", "Ranges"));
      var t = el("table", "ranges"), hr = el("tr");
      ["", "min", "max", "mean", "std", "NaN", "Inf"].forEach(function (h) { hr.appendChild(el("th", h ? "num" : "", h)); });
      t.appendChild(hr);
      [["reference", "ref"], ["target", "target"]].forEach(function (side) {
        var r = el("tr");
        r.appendChild(el("td", "", side[0]));
        ["min", "max", "mean", "std"].forEach(function (k) { r.appendChild(el("td", "num", fmt(layer.m[side[1] + "_" + k]))); });
        ["nan", "inf"].forEach(function (k) { var v = layer.m[side[1] + "_" + k]; r.appendChild(el("td", "num" + (v ? " bad" : ""), fmt(v, "int"))); });
        t.appendChild(r);
      });
      host.appendChild(t);
      host.appendChild(el("div", "small muted", fmt(layer.m.count, "int") + " values, " + fmt(layer.m.finite_count, "int") + " finite on both sides"));
    }
    if (layer.iso) {
      host.appendChild(el("div", "sub", "Isolated error"));
      host.appendChild(el("div", "small muted", "The reference op re-run alone on the target's own inputs. An isolated error close to the in-context error means this op introduces it."));
      var it = el("table", "ranges"), ih = el("tr");
      ["", "in context", "isolated"].forEach(function (h) { ih.appendChild(el("th", h ? "num" : "", h)); });
      it.appendChild(ih);
      [["cosine", "cos"], ["rel_l2", ""], ["sqnr_db", "db"], ["max_abs", ""], ["mean_abs", ""]].forEach(function (p) {
        if (!(p[0] in layer.iso)) return;
        var r = el("tr"), own = metric(layer, p[0]), iso = layer.iso[p[0]];
        r.appendChild(el("td", "", p[0] === "sqnr_db" ? "SQNR dB" : p[0]));
        r.appendChild(el("td", "num", fmt(own, p[1])));
        r.appendChild(el("td", "num" + (p[0] === "cosine" && failsCos(iso) ? " bad" : ""), fmt(iso, p[1])));
        it.appendChild(r);
      });
      host.appendChild(it);
    }
    var d = layer.d || {};
    if (d.h) {
      host.appendChild(el("div", "sub", "Value histogram"));
      var lg = el("div", "legend");
      var a = el("span"); var ai = el("i"); ai.style.background = "#0969da"; a.appendChild(ai); a.appendChild(document.createTextNode("reference"));
      var b = el("span"); var bi = el("i"); bi.style.background = "#e16f24"; b.appendChild(bi); b.appendChild(document.createTextNode("target"));
      lg.appendChild(a); lg.appendChild(b);
      if (d.h.n) lg.appendChild(el("span", "", d.h.n + " values sampled"));
      host.appendChild(lg);
      host.appendChild(histogram(d.h));
    }
    if (d.eh) { host.appendChild(el("div", "sub", "Error histogram (target − reference)")); host.appendChild(errorHistogram(d.eh)); }
    if (d.cc) {
      var bars = channelBars(d.cc);
      host.appendChild(el("div", "sub", "Per-channel cosine (" + d.cc.length + " channels" + (bars.worst >= 0 ? ", worst " + bars.worst + " = " + fmt(bars.worstValue, "cos") : "") + ")"));
      host.appendChild(bars.svg);
    }
    if (d.hm) { host.appendChild(el("div", "sub", "Error heatmap")); host.appendChild(heatmap(d.hm)); }
    if (!layer.m && !d.h) host.appendChild(el("p", "empty", "This layer was not compared, so there are no metrics to show."));
    else if (!d.h && !d.eh && !d.cc && !d.hm) host.appendChild(el("p", "empty", "No histogram or channel detail was stored for this layer."));
    if (layer.notes) {
      var ul = el("ul", "notes");
      layer.notes.forEach(function (n) { ul.appendChild(el("li", "", n)); });
      host.appendChild(ul);
    }
  }

  /* ---------- graph ---------- */
  function nodeFill(layer) {
    var c = metric(layer, "cosine");
    if (c === null) return "#eaeef2";
    if (layer.status === "noisy") return "#ddf4ff";
    if (c >= TH.cosine && layer.status !== "diverged") return "#dafbe1";
    var t = Math.min(1, Math.max(0, (TH.cosine - c) / Math.max(1e-6, TH.cosine - graphMin)));
    var a = [255, 235, 233], b = [255, 190, 187], e = [250, 128, 128];
    var mix = t < 0.5 ? a.map(function (v, j) { return Math.round(v + (b[j] - v) * t * 2); }) : b.map(function (v, j) { return Math.round(v + (e[j] - v) * (t - 0.5) * 2); });
    return "rgb(" + mix.join(",") + ")";
  }
  var graphMin = 1;
  /* the node's label without a last segment that only repeats the op type shown above it */
  function nodeLabel(i) {
    var segs = label(i).split("/"), op = String(L[i].op || "").toLowerCase();
    if (segs.length > 1 && op && segs[segs.length - 1].toLowerCase() === op) segs.pop();
    return segs.join("/");
  }
  function drawGraph() {
    var g = data.graph;
    if (!g || !g.nodes.length) return;
    document.getElementById("graph-section").hidden = false;
    if (data.counts && data.counts.noisy) document.getElementById("legend-noisy").hidden = false;
    var host = document.getElementById("graph");
    L.forEach(function (l) { var c = metric(l, "cosine"); if (c !== null && c < graphMin) graphMin = c; });
    var s = sv("svg", { width: g.w, height: g.h, viewBox: "0 0 " + g.w + " " + g.h, role: "img", "aria-label": "model graph coloured by cosine" });
    var pos = {};
    g.nodes.forEach(function (li, k) { pos[li] = [g.x[k], g.y[k]]; });
    var edges = sv("g", {});
    g.nodes.forEach(function (li) {
      (L[li].inputs || []).forEach(function (src) {
        if (!pos[src]) return;
        var x1 = pos[src][0] + g.nw, y1 = pos[src][1] + g.nh / 2, x2 = pos[li][0], y2 = pos[li][1] + g.nh / 2, mx = (x1 + x2) / 2, d;
        if (y1 === y2 && x2 - x1 > g.nw) {
          /* a skip connection along a row would hide behind the nodes: arc over them */
          var sx = pos[src][0] + g.nw / 2, tx = pos[li][0] + g.nw / 2, top = pos[li][1], h = Math.min(40, 16 + (x2 - x1) / 20);
          d = "M" + sx + " " + top + "C" + sx + " " + (top - h) + " " + tx + " " + (top - h) + " " + tx + " " + top;
        } else {
          d = "M" + x1 + " " + y1 + "C" + mx + " " + y1 + " " + mx + " " + y2 + " " + x2 + " " + y2;
        }
        var hot = L[src].status === "diverged" && L[li].status === "diverged";
        edges.appendChild(sv("path", { "class": "edge" + (hot ? " hot" : ""), d: d }));
      });
    });
    s.appendChild(edges);
    g.nodes.forEach(function (li) {
      var layer = L[li], x = pos[li][0], y = pos[li][1];
      var node = sv("g", { "class": "node", "data-index": li, transform: "translate(" + x + " " + y + ")" });
      var compared = metric(layer, "cosine") !== null;
      node.appendChild(sv("rect", { "class": "box", width: g.nw, height: g.nh, rx: 6, fill: nodeFill(layer),
        stroke: layer.origin ? "#cf222e" : (compared ? (layer.status === "diverged" ? "#ff8182" : (layer.status === "noisy" ? "#54aeff" : "#4ac26b")) : "#afb8c1"),
        "stroke-width": layer.origin ? 3 : 1, "stroke-dasharray": compared ? "none" : "4 3" }));
      node.appendChild(sv("text", { x: 8, y: 14, "font-size": 11, "font-weight": 600, fill: "#1f2328" }, midTrim(opLabel(layer.op), 12)));
      node.appendChild(sv("text", { x: g.nw - 6, y: 14, "font-size": 10, fill: "#59636e", "text-anchor": "end" }, "#" + li));
      node.appendChild(sv("text", { "class": "nlabel", x: 8, y: 27, "font-size": 10, fill: "#424a53" }, fitLabel(nodeLabel(li), 19)));
      tip(node, "#" + li + " " + layer.name + (layer.op ? " (" + layer.op + ")" : "") + "\ncosine " + fmt(metric(layer, "cosine"), "cos") + "\n" + statusLabel(layer.status));
      node.addEventListener("click", function () { select(li, "graph"); });
      s.appendChild(node);
      views.nodes[li] = node;
    });
    host.appendChild(s);
  }
  function markGraph(scroll) {
    for (var i in views.nodes) {
      var box = views.nodes[i].querySelector(".box"), on = Number(i) === state.sel, layer = L[i];
      box.setAttribute("stroke-width", on ? 3 : (layer.origin ? 3 : 1));
      box.setAttribute("stroke", on ? "#0969da" : (layer.origin ? "#cf222e" : (metric(layer, "cosine") !== null ? (layer.status === "diverged" ? "#ff8182" : (layer.status === "noisy" ? "#54aeff" : "#4ac26b")) : "#afb8c1")));
    }
    var node = views.nodes[state.sel], host = document.getElementById("graph");
    if (scroll && node && data.graph) {
      var k = data.graph.nodes.indexOf(state.sel);
      host.scrollLeft = Math.max(0, data.graph.x[k] - host.clientWidth / 2 + data.graph.nw / 2);
      host.scrollTop = Math.max(0, data.graph.y[k] - host.clientHeight / 2);
    }
  }

  /* ---------- selection ---------- */
  function select(i, from) {
    if (!(i >= 0 && i < L.length)) return;
    state.sel = i;
    views.rows.forEach(function (r, k) {
      r.classList.toggle("sel", k === i);
      r.setAttribute("aria-selected", k === i ? "true" : "false");
      if (r.parentNode) r.setAttribute("tabindex", k === i ? "0" : "-1");
    });
    if (from !== "hash" && from !== "start") writeHash(i);
    if (from !== "table") {
      var row = views.rows[i], wrap = document.querySelector(".table-wrap");
      if (row.parentNode && wrap) wrap.scrollTop = Math.max(0, row.offsetTop - wrap.clientHeight / 3);
    }
    renderDetail(i);
    markChart();
    markGraph(from !== "graph");
  }

  /* ---------- the selected layer in the URL: #layer=<name> (a shareable link) ---------- */
  function hashParams(hash) {
    var out = {};
    String(hash || "").replace(/^#/, "").split("&").forEach(function (part) {
      if (!part) return;
      var eq = part.indexOf("="), key = eq < 0 ? part : part.slice(0, eq), value = eq < 0 ? "" : part.slice(eq + 1);
      try { out[decodeURIComponent(key)] = decodeURIComponent(value); } catch (e) { /* a malformed escape: ignored */ }
    });
    return out;
  }
  function layerFromHash(hash) {
    var p = hashParams(hash);
    if (p.layer !== undefined) { for (var i = 0; i < L.length; i++) if (L[i].name === p.layer) return i; }
    if (p.i !== undefined && /^\d+$/.test(p.i) && Number(p.i) < L.length) return Number(p.i);
    return -1;
  }
  function writeHash(i) {
    var hash = "#layer=" + encodeURIComponent(L[i].name).replace(/%2F/g, "/").replace(/%3A/g, ":");
    if (location.hash === hash) return;
    try { history.replaceState(null, "", hash); } catch (e) { location.replace(hash); }
  }
  window.addEventListener("hashchange", function () {
    var i = layerFromHash(location.hash);
    if (i >= 0 && i !== state.sel) select(i, "hash");
  });

  /* ---------- self-test (URL ends with #selftest) ---------- */
  function selftest() {
    var checks = [];
    function check(name, ok, info) { checks.push({ name: name, ok: !!ok, info: info === undefined ? null : String(info) }); }
    try {
      var rows = document.querySelectorAll("#layer-table tbody tr");
      check("one table row per layer", rows.length === L.length, rows.length + " rows for " + L.length + " layers");
      var names = Array.prototype.map.call(rows, function (r) { return r.querySelector("td.name .nm").textContent; });
      check("every layer name shown as text", L.every(function (l) { return names.indexOf(l.name) >= 0; }));
      var fd = document.getElementById("first-divergence");
      if (data.first !== null) check("first divergence shown", fd && fd.textContent === data.first, fd ? fd.textContent : "missing");
      else check("no divergence stated", !fd && document.querySelector(".first.none"));
      var pts = Object.keys(views.points).map(Number);
      var other = pts.filter(function (k) { return k !== state.sel; });
      if (other.length) {
        var k = other[other.length - 1];
        click(views.points[k]);
        var dn = document.getElementById("detail-name");
        check("chart click opens that layer", dn && dn.textContent === L[k].name, dn ? dn.textContent : "no detail");
      }
      if (data.first !== null && views.points[L.map(function (l) { return l.name; }).indexOf(data.first)]) {
        var fi = L.map(function (l) { return l.name; }).indexOf(data.first);
        click(views.points[fi]);
        check("chart click opens the first divergence", document.getElementById("detail-name").textContent === data.first);
        check("detail has a histogram when stored", !L[fi].d || !L[fi].d.h || document.querySelectorAll("#detail svg").length > 0);
      }
      var gnodes = Object.keys(views.nodes).map(Number);
      if (gnodes.length > 1) {
        var gk = gnodes[0] === state.sel ? gnodes[1] : gnodes[0];
        click(views.nodes[gk]);
        check("graph click opens that layer", document.getElementById("detail-name").textContent === L[gk].name);
      }
      if (fd && fd.tagName === "BUTTON") { click(fd); check("first-divergence link selects it", document.getElementById("detail-name").textContent === data.first); }
      var th = document.querySelector('#layer-table th[data-key="cosine"]');
      click(th);
      var cosSorted = Array.prototype.map.call(document.querySelectorAll("#layer-table tbody tr"), function (r) { return metric(L[Number(r.getAttribute("data-index"))], "cosine"); })
        .filter(function (v) { return v !== null; });
      check("sorting by cosine", cosSorted.every(function (v, j) { return j === 0 || cosSorted[j - 1] <= v; }));
      state.sortKey = "i"; state.sortDir = 1;
      var filt = document.getElementById("filter");
      filt.value = L[L.length - 1].name;
      filt.dispatchEvent(new Event("input"));
      var fr = document.querySelectorAll("#layer-table tbody tr").length;
      check("filtering by name", fr >= 1 && fr <= L.length, fr + " rows");
      filt.value = ""; filt.dispatchEvent(new Event("input"));
      check("no img elements from data", document.getElementsByTagName("img").length === 0);
      var pick = L.length > 1 ? L.length - 1 : 0;
      click(views.rows[pick]);
      check("selection written to the URL hash", layerFromHash(location.hash) === pick && /^#layer=/.test(location.hash), location.hash);
      check("the hash restores the selection", layerFromHash("#layer=" + encodeURIComponent(L[0].name)) === 0);
      var before = state.sel;
      views.rows[before].focus();
      views.rows[before].dispatchEvent(new KeyboardEvent("keydown", { key: "ArrowUp", bubbles: true, cancelable: true }));
      var up = Array.prototype.slice.call(document.querySelectorAll("#layer-table tbody tr"));
      var expect = up.indexOf(views.rows[before]) > 0 ? Number(up[up.indexOf(views.rows[before]) - 1].getAttribute("data-index")) : before;
      check("arrow keys move the selection", state.sel === expect && document.activeElement === views.rows[expect], state.sel + " vs " + expect);
      check("the selected row is in the tab order", views.rows[state.sel].getAttribute("tabindex") === "0" &&
        document.querySelectorAll('#layer-table tbody tr[tabindex="0"]').length === 1);
      /* each segment of a name (text between line-break opportunities) sits on one line */
      var split = [];
      document.querySelectorAll("#layer-table td.name .nm").forEach(function (nm) {
        Array.prototype.forEach.call(nm.childNodes, function (t) {
          if (t.nodeType !== 3 || !t.textContent.trim()) return;
          var r = document.createRange();
          r.selectNodeContents(t);
          var lines = {};
          Array.prototype.forEach.call(r.getClientRects(), function (b) { if (b.width > 0) lines[Math.round(b.top)] = 1; });
          if (Object.keys(lines).length > 1 && nm.parentNode.clientWidth >= t.textContent.length * 8) split.push(t.textContent);
        });
      });
      check("names wrap only at separators", split.length === 0, split.slice(0, 3).join(", "));
      check("no sideways scrolling of the page", document.documentElement.scrollWidth <= window.innerWidth + 1,
        document.documentElement.scrollWidth + " px content in a " + window.innerWidth + " px window");
      var xl = Array.prototype.map.call(document.querySelectorAll("#chart .xlabel"), function (t) { return t.firstChild.textContent; });
      check("x axis labels name layers", xl.length > 0 && xl.every(function (t) { return !/^#\d+$/.test(t); }), xl.slice(0, 5).join(", "));
    } catch (e) {
      errors.push("selftest: " + (e && e.stack ? e.stack : e));
    }
    check("no script errors", errors.length === 0, errors.join(" | "));
    var ok = checks.every(function (c) { return c.ok; });
    var out = document.getElementById("selftest-result");
    out.textContent = JSON.stringify({ ok: ok, layers: L.length, checks: checks, errors: errors });
    document.body.setAttribute("data-selftest", ok ? "pass" : "fail");
  }

  /* ---------- start ---------- */
  var bootHash = location.hash;
  buildTable();
  drawChart();
  drawGraph();
  document.querySelectorAll("[data-layer]").forEach(function (b) {
    b.addEventListener("click", function () { select(Number(b.getAttribute("data-layer")), "link"); });
  });
  var first = layerFromHash(bootHash);
  if (first < 0 && data.first !== null) first = L.map(function (l) { return l.name; }).indexOf(data.first);
  if (first < 0) {
    var worst = -1, wv = 2;
    L.forEach(function (l, i) { var c = metric(l, "cosine"); if (c !== null && c < wv) { wv = c; worst = i; } });
    first = worst >= 0 ? worst : (L.length ? 0 : -1);
  }
  if (first >= 0) select(first, "start");
  var resizeTimer = null;
  window.addEventListener("resize", function () { clearTimeout(resizeTimer); resizeTimer = setTimeout(drawChart, 120); });
  if ("selftest" in hashParams(bootHash)) {
    selftest();
    if (first >= 0) select(first, "reset");
    document.getElementById("selftest-result").setAttribute("data-hash", location.hash);
  }
})();
