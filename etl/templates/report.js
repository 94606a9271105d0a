(function () {
  "use strict";
  // The production timeline. Data comes from the JSON block (never from markup); text reaches the
  // DOM only through textContent; runs are drawn on one canvas, lanes and time culled per frame.
  var started = performance.now();
  var body = document.body;
  var D = JSON.parse(document.getElementById("report-data").textContent);
  var R = D.runs, A = D.anomalies;
  var N = R.s.length, NA = A.t.length;

  var LANE_H = 22, BAR_H = 16, AXIS_H = 42, GUTTER = 130, RIGHT_PAD = 16, DAY = 86400;
  var PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#a0cbe8", "#ffbe7d", "#8cd17d", "#86bcb6", "#f1ce63", "#d4a6c8", "#1f77b4",
    "#2ca02c", "#9467bd", "#8c564b", "#17becf", "#bcbd22"];
  var NO_PRODUCT = "#9aa0a6", BAD = "#b00020";

  // ------------------------------------------------------------------ time formatting (plant zone)
  var zone = D.zone;
  function formatter(options) {
    var opts = { timeZone: zone };
    for (var key in options) { opts[key] = options[key]; }
    try {
      return new Intl.DateTimeFormat("en-GB", opts);
    } catch (err) {
      zone = "UTC";
      opts.timeZone = "UTC";
      return new Intl.DateTimeFormat("en-GB", opts);
    }
  }
  var fmtStamp = formatter({ year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit",
    minute: "2-digit", second: "2-digit", hourCycle: "h23" });
  var fmtClock = formatter({ hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
  var fmtDay = formatter({ weekday: "short", day: "numeric", month: "short" });
  var fmtDate = formatter({ day: "numeric", month: "short" });
  var fmtMonth = formatter({ month: "long", year: "numeric" });
  function ms(t) { return (D.t0 + t) * 1000; }
  function stamp(t) {
    if (t === null || t === undefined) { return "(no time)"; }
    var parts = {};
    fmtStamp.formatToParts(new Date(ms(t))).forEach(function (p) { parts[p.type] = p.value; });
    return parts.year + "-" + parts.month + "-" + parts.day + " " + parts.hour + ":" +
      parts.minute + ":" + parts.second;
  }
  function duration(seconds) {
    seconds = Math.max(0, Math.round(seconds));
    var d = Math.floor(seconds / DAY), h = Math.floor(seconds % DAY / 3600);
    var m = Math.floor(seconds % 3600 / 60), s = seconds % 60;
    if (d) { return d + " d " + h + " h " + m + " min"; }
    if (h) { return h + " h " + m + " min"; }
    if (m) { return m + " min " + s + " s"; }
    return s + " s";
  }
  function el(tag, text, cls) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    if (cls) { node.className = cls; }
    return node;
  }

  // ------------------------------------------------------------------ lanes and indexes
  var laneNames = D.machines.slice();
  var noMachineLane = -1;
  for (var a = 0; a < NA; a++) {
    if (A.m[a] < 0 && A.t[a] !== null) { noMachineLane = laneNames.length; laneNames.push("(no machine)"); break; }
  }
  var nLanes = laneNames.length;
  var S = new Float64Array(N), E = new Float64Array(N), OPEN = new Uint8Array(N);
  var laneFrom = new Int32Array(nLanes), laneTo = new Int32Array(nLanes), maxDur = new Float64Array(nLanes);
  var i, lane;
  for (i = 0; i < N; i++) {
    lane = R.m[i];
    S[i] = R.s[i];
    if (R.e[i] === null) { OPEN[i] = 1; E[i] = Math.max(D.now, S[i]); } else { E[i] = R.e[i]; }
    if (laneTo[lane] === 0) { laneFrom[lane] = i; }
    laneTo[lane] = i + 1;
    if (E[i] - S[i] > maxDur[lane]) { maxDur[lane] = E[i] - S[i]; }
  }
  var laneAnomalies = [];
  for (lane = 0; lane < nLanes; lane++) { laneAnomalies.push([]); }
  for (a = 0; a < NA; a++) {
    if (A.t[a] === null) { continue; }
    laneAnomalies[A.m[a] < 0 ? noMachineLane : A.m[a]].push(a);
  }
  laneAnomalies.forEach(function (list) { list.sort(function (x, y) { return A.t[x] - A.t[y]; }); });
  function colour(p) {
    if (p < 0) { return NO_PRODUCT; }
    if (p < PALETTE.length) { return PALETTE[p]; }
    return "hsl(" + ((p * 137.508) % 360).toFixed(1) + ", 55%, 58%)";
  }
  var colours = D.products.map(function (_, p) { return colour(p); });

  // the extent: everything there is, a little padded
  var lo = D.lo, hi = D.hi;
  var extLo = lo, extHi = Math.max(hi, D.now);
  for (lane = 0; lane < nLanes; lane++) {
    if (laneTo[lane] > laneFrom[lane]) {
      extLo = Math.min(extLo, S[laneFrom[lane]]);
    }
  }
  for (i = 0; i < N; i++) { if (E[i] > extHi) { extHi = E[i]; } }
  for (a = 0; a < NA; a++) {
    if (A.t[a] !== null) { extLo = Math.min(extLo, A.t[a]); extHi = Math.max(extHi, A.t[a]); }
  }
  if (extHi - extLo < 3600) { extHi = extLo + 3600; }
  var pad = (extHi - extLo) * 0.01;
  extLo -= pad; extHi += pad;
  var MIN_SPAN = 600, MAX_SPAN = Math.max(DAY, (extHi - extLo) * 1.5);
  // first view: the range asked for (runs reaching into it from outside are cut at its edges)
  var viewPad = Math.max(60, (hi - lo) * 0.01);
  var viewLo = lo - viewPad, viewHi = Math.max(hi, lo + 3600) + viewPad;

  // ------------------------------------------------------------------ canvas
  var chart = document.getElementById("chart");
  var canvas = document.getElementById("canvas");
  var spacer = document.getElementById("spacer");
  var ctx = canvas.getContext("2d");
  var dpr = window.devicePixelRatio || 1;
  var width = 0, height = 0, contentH = AXIS_H + nLanes * LANE_H + 4;
  var selected = null, highlight = -1, lastDrawn = 0;

  function layout() {
    width = Math.max(400, chart.clientWidth);
    var room = Math.max(260, Math.floor(window.innerHeight * 0.72));
    height = Math.min(contentH, room);
    chart.style.height = (height + 2) + "px";
    spacer.style.height = Math.max(0, contentH - height) + "px";
    canvas.width = Math.round(width * dpr);
    canvas.height = Math.round(height * dpr);
    canvas.style.width = width + "px";
    canvas.style.height = height + "px";
  }
  function plotW() { return width - GUTTER - RIGHT_PAD; }
  function X(t) { return GUTTER + (t - viewLo) / (viewHi - viewLo) * plotW(); }
  function T(x) { return viewLo + (x - GUTTER) / plotW() * (viewHi - viewLo); }
  function laneY(l) { return AXIS_H + l * LANE_H - chart.scrollTop; }

  // first run of the lane that can reach ``t`` (runs sorted by start; maxDur bounds the look-back)
  function firstFrom(l, t) {
    var loI = laneFrom[l], hiI = laneTo[l], from = t - maxDur[l];
    while (loI < hiI) {
      var mid = (loI + hiI) >> 1;
      if (S[mid] < from) { loI = mid + 1; } else { hiI = mid; }
    }
    return loI;
  }

  var STEPS = [600, 1800, 3600, 7200, 10800, 21600, 43200, DAY, 2 * DAY, 7 * DAY, 14 * DAY, 28 * DAY];
  function ticks() {
    var k = plotW() / (viewHi - viewLo), step = STEPS[STEPS.length - 1];
    for (var s = 0; s < STEPS.length; s++) { if (STEPS[s] * k >= 64) { step = STEPS[s]; break; } }
    var out = [], days = D.days, d;
    if (step < DAY) {
      for (d = 0; d < days.length - 1; d++) {
        if (days[d + 1][0] < viewLo || days[d][0] > viewHi) { continue; }
        for (var t = days[d][0]; t < days[d + 1][0]; t += step) {
          out.push({ t: t, label: fmtClock.format(new Date(ms(t))), major: t === days[d][0] });
        }
      }
    } else {
      var every = step / DAY;
      for (d = 0; d < days.length; d++) {
        var day = days[d];
        if (day[0] < viewLo - step || day[0] > viewHi) { continue; }
        var take = every === 1 || (every === 2 ? day[3] % 2 === 0 : day[1] === 0 && day[4] % (every / 7) === 0);
        if (take) { out.push({ t: day[0], label: (every >= 7 ? fmtDate : fmtDay).format(new Date(ms(day[0]))), major: day[2] === 1 }); }
      }
    }
    return { step: step, list: out };
  }

  function draw() {
    var began = performance.now();
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, width, height);
    ctx.font = "11px system-ui, sans-serif";
    ctx.textBaseline = "middle";
    var top = chart.scrollTop;
    var first = Math.max(0, Math.floor(top / LANE_H));
    var last = Math.min(nLanes - 1, Math.floor((top + height - AXIS_H) / LANE_H));
    var pw = plotW(), k = pw / (viewHi - viewLo), l, y, x0, x1;

    ctx.save();
    ctx.beginPath();
    ctx.rect(GUTTER, AXIS_H, pw, height - AXIS_H);
    ctx.clip();
    // weekends and lane stripes
    ctx.fillStyle = "#f3f5f8";
    var days = D.days;
    for (var d = 0; d < days.length - 1; d++) {
      if (days[d][1] >= 5 && days[d + 1][0] > viewLo && days[d][0] < viewHi) {
        x0 = X(days[d][0]); x1 = X(days[d + 1][0]);
        ctx.fillRect(x0, AXIS_H, x1 - x0, height - AXIS_H);
      }
    }
    for (l = first; l <= last; l += 1) {
      if (l % 2 === 1) {
        ctx.fillStyle = "rgba(20, 40, 80, 0.035)";
        ctx.fillRect(GUTTER, laneY(l), pw, LANE_H);
      }
    }
    var tk = ticks();
    tk.list.forEach(function (tick) {
      ctx.fillStyle = tick.major ? "#c9d1db" : "#e8ecf1";
      ctx.fillRect(Math.round(X(tick.t)), AXIS_H, 1, height - AXIS_H);
    });

    // runs
    var drawn = 0;
    for (l = first; l <= last; l += 1) {
      if (laneTo[l] <= laneFrom[l]) { continue; }
      y = laneY(l) + (LANE_H - BAR_H) / 2;
      var lastX = -1, lastColour = "";
      for (i = firstFrom(l, viewLo); i < laneTo[l] && S[i] < viewHi; i++) {
        if (E[i] < viewLo) { continue; }
        drawn += 1;
        x0 = GUTTER + (S[i] - viewLo) * k;
        x1 = GUTTER + (E[i] - viewLo) * k;
        var c = colours[R.p[i]] || NO_PRODUCT;
        if (OPEN[i]) {
          var g = ctx.createLinearGradient(x0, 0, Math.max(x1, x0 + 1), 0);
          g.addColorStop(0, c);
          g.addColorStop(0.55, c);
          g.addColorStop(1, "rgba(255, 255, 255, 0.15)");
          ctx.fillStyle = g;
          ctx.fillRect(x0, y, Math.max(1, x1 - x0), BAR_H);
          ctx.fillStyle = c;
          ctx.beginPath();
          ctx.moveTo(x1, y - 1); ctx.lineTo(x1 + 8, y + BAR_H / 2); ctx.lineTo(x1, y + BAR_H + 1);
          ctx.closePath();
          ctx.fill();
          lastColour = "";
          continue;
        }
        if (x1 - x0 < 1) {
          // sub-pixel runs: one pixel column per colour is enough
          var px = Math.floor(x0);
          if (px === lastX && c === lastColour) { continue; }
          lastX = px; lastColour = c;
          ctx.fillStyle = c;
          ctx.fillRect(px, y, 1, BAR_H);
          continue;
        }
        ctx.fillStyle = c;
        ctx.fillRect(x0, y, x1 - x0 - (x1 - x0 > 3 ? 1 : 0), BAR_H);
        lastX = -1;
        if (x1 - x0 > 46) {
          var label = D.orders[R.o[i]];
          var room = Math.min(x1, GUTTER + pw) - Math.max(x0, GUTTER) - 8;
          if (room > 30) {
            ctx.fillStyle = "#ffffff";
            ctx.fillText(fit(label, room), Math.max(x0, GUTTER) + 4, y + BAR_H / 2 + 0.5);
          }
        }
      }
    }
    if (selected !== null && selected.run !== undefined) {
      var r = selected.run;
      l = R.m[r];
      ctx.strokeStyle = "#111";
      ctx.lineWidth = 2;
      ctx.strokeRect(X(S[r]) - 1, laneY(l) + (LANE_H - BAR_H) / 2 - 1, Math.max(2, X(E[r]) - X(S[r]) + 2), BAR_H + 2);
    }

    // anomalies: a mark across the lane and a diamond at its top
    var marks = 0;
    for (l = first; l <= last; l += 1) {
      var list = laneAnomalies[l];
      for (var j = 0; j < list.length; j++) {
        var t = A.t[list[j]];
        if (t < viewLo || t > viewHi) { continue; }
        marks += 1;
        var x = Math.round(X(t)) + 0.5, yl = laneY(l);
        ctx.fillStyle = "rgba(176, 0, 32, 0.55)";
        ctx.fillRect(x - 0.5, yl + 1, 1.5, LANE_H - 2);
        diamond(x, yl + 5, list[j] === highlight ? 7 : 4.5);
      }
    }
    // the instant data is known until: open runs reach it
    var nx = X(D.now);
    if (nx >= GUTTER && nx <= GUTTER + pw) {
      ctx.strokeStyle = "#2f6fb3";
      ctx.setLineDash([4, 3]);
      ctx.lineWidth = 1;
      ctx.beginPath(); ctx.moveTo(Math.round(nx) + 0.5, AXIS_H); ctx.lineTo(Math.round(nx) + 0.5, height); ctx.stroke();
      ctx.setLineDash([]);
    }
    ctx.restore();

    // gutter: machine names
    ctx.fillStyle = "#ffffff";
    ctx.fillRect(0, AXIS_H, GUTTER, height - AXIS_H);
    ctx.fillStyle = "#1d2430";
    ctx.font = "12px system-ui, sans-serif";
    for (l = first; l <= last; l += 1) {
      ctx.fillStyle = l === noMachineLane ? BAD : "#1d2430";
      ctx.fillText(fit(laneNames[l], GUTTER - 14), 8, laneY(l) + LANE_H / 2 + 0.5);
    }
    ctx.fillStyle = "#d8dee6";
    ctx.fillRect(GUTTER - 1, AXIS_H, 1, height - AXIS_H);

    // axis
    ctx.fillStyle = "#ffffff";
    ctx.fillRect(0, 0, width, AXIS_H);
    ctx.fillStyle = "#d8dee6";
    ctx.fillRect(0, AXIS_H - 1, width, 1);
    ctx.save();
    ctx.beginPath();
    ctx.rect(GUTTER, 0, pw + RIGHT_PAD, AXIS_H);
    ctx.clip();
    ctx.font = "11px system-ui, sans-serif";
    tk.list.forEach(function (tick) {
      var tx = Math.round(X(tick.t));
      ctx.fillStyle = "#9aa5b1";
      ctx.fillRect(tx, AXIS_H - 7, 1, 6);
      ctx.fillStyle = "#4a5563";
      ctx.fillText(tick.label, tx + 3, AXIS_H - 12);
    });
    // upper row: days (when ticks are hours) or months
    ctx.font = "600 12px system-ui, sans-serif";
    ctx.fillStyle = "#1d2430";
    var upper = [];
    for (d = 0; d < days.length; d++) {
      if (tk.step < DAY ? true : days[d][2] === 1) { upper.push(d); }
    }
    for (var u = 0; u < upper.length; u++) {
      var from = days[upper[u]][0];
      var to = u + 1 < upper.length ? days[upper[u + 1]][0] : Infinity;
      if (to < viewLo || from > viewHi) { continue; }
      var text = (tk.step < DAY ? fmtDay : fmtMonth).format(new Date(ms(from)));
      var ux = Math.max(X(from), GUTTER) + 3;
      var limit = Math.min(X(to), GUTTER + pw) - ux - 4;
      if (limit > 24) { ctx.fillText(fit(text, limit), ux, 13); }
    }
    if (nx >= GUTTER && nx <= GUTTER + pw + RIGHT_PAD) {
      ctx.font = "11px system-ui, sans-serif";
      var nowLabel = D.now_label;
      var w = ctx.measureText(nowLabel).width;
      var lx = Math.max(GUTTER, nx - w - 4);
      ctx.fillStyle = "#ffffff";
      ctx.fillRect(lx - 4, 3, w + 8, 18);
      ctx.fillStyle = "#2f6fb3";
      ctx.fillText(nowLabel, lx, 13);
    }
    ctx.restore();
    ctx.fillStyle = "#5f6b7a";
    ctx.font = "11px system-ui, sans-serif";
    ctx.fillText("machine", 8, AXIS_H - 12);
    ctx.fillText(zone, 8, 13);

    if (N === 0 && NA === 0) {
      ctx.fillStyle = "#5f6b7a";
      ctx.font = "14px system-ui, sans-serif";
      ctx.fillText("No runs and no anomalies in this range.", GUTTER + 16, AXIS_H + 24);
    }
    lastDrawn = drawn;
    body.setAttribute("data-runs-drawn", String(drawn));
    body.setAttribute("data-anomalies-drawn", String(marks));
    body.setAttribute("data-draw-ms", (performance.now() - began).toFixed(1));
    syncControls();
  }

  function diamond(x, y, r) {
    ctx.beginPath();
    ctx.moveTo(x, y - r); ctx.lineTo(x + r, y); ctx.lineTo(x, y + r); ctx.lineTo(x - r, y);
    ctx.closePath();
    ctx.fillStyle = BAD;
    ctx.fill();
    ctx.strokeStyle = "#ffffff";
    ctx.lineWidth = 1;
    ctx.stroke();
  }
  var fitCache = {};
  function fit(text, room) {
    text = String(text);
    if (ctx.measureText(text).width <= room) { return text; }
    var key = ctx.font + "|" + room + "|" + text;
    if (fitCache[key] !== undefined) { return fitCache[key]; }
    var cut = text;
    while (cut.length > 1 && ctx.measureText(cut + "\u2026").width > room) { cut = cut.slice(0, -1); }
    fitCache[key] = cut + "\u2026";
    return fitCache[key];
  }

  var pending = false;
  function schedule() {
    if (pending) { return; }
    pending = true;
    window.requestAnimationFrame(function () { pending = false; draw(); });
  }

  // ------------------------------------------------------------------ view changes
  function setView(newLo, newHi) {
    var span = Math.min(MAX_SPAN, Math.max(MIN_SPAN, newHi - newLo));
    var centre = (newLo + newHi) / 2;
    centre = Math.min(Math.max(centre, extLo), extHi);
    viewLo = centre - span / 2;
    viewHi = centre + span / 2;
    schedule();
  }
  function zoomAt(factor, t) {
    var span = Math.min(MAX_SPAN, Math.max(MIN_SPAN, (viewHi - viewLo) * factor));
    var share = (t - viewLo) / (viewHi - viewLo);
    setView(t - share * span, t - share * span + span);
  }
  function pan(fraction) {
    var shift = (viewHi - viewLo) * fraction;
    setView(viewLo + shift, viewHi + shift);
  }
  function show(span) {
    var end = Math.min(extHi, Math.max(viewHi, extLo + span));
    if (viewHi - viewLo > span) { end = (viewLo + viewHi) / 2 + span / 2; }
    setView(end - span, end);
  }
  var position = document.getElementById("position");
  var rangeText = document.getElementById("range");
  function syncControls() {
    var centre = (viewLo + viewHi) / 2;
    position.value = String(Math.round((centre - extLo) / (extHi - extLo) * 1000));
    rangeText.textContent = stamp(viewLo).slice(0, 16) + " \u2013 " + stamp(viewHi).slice(0, 16) + " (" + duration(viewHi - viewLo) + ")";
  }
  position.addEventListener("input", function () {
    var centre = extLo + Number(position.value) / 1000 * (extHi - extLo), half = (viewHi - viewLo) / 2;
    setView(centre - half, centre + half);
  });
  document.querySelector(".toolbar").addEventListener("click", function (event) {
    var action = event.target && event.target.getAttribute && event.target.getAttribute("data-action");
    if (action === "fit") { setView(extLo, extHi); }
    else if (action === "day") { show(DAY); }
    else if (action === "week") { show(7 * DAY); }
    else if (action === "month") { show(28 * DAY); }
    else if (action === "in") { zoomAt(0.5, (viewLo + viewHi) / 2); }
    else if (action === "out") { zoomAt(2, (viewLo + viewHi) / 2); }
    else if (action === "left") { pan(-0.5); }
    else if (action === "right") { pan(0.5); }
    else if (action === "end") { var span = viewHi - viewLo; setView(extHi - span, extHi); }
  });
  document.addEventListener("keydown", function (event) {
    var tag = event.target && event.target.tagName;
    if (tag === "INPUT" || tag === "SELECT" || tag === "TEXTAREA") { return; }
    if (event.key === "+" || event.key === "=") { zoomAt(0.5, (viewLo + viewHi) / 2); }
    else if (event.key === "-") { zoomAt(2, (viewLo + viewHi) / 2); }
    else if (event.key === "ArrowLeft") { pan(-0.25); }
    else if (event.key === "ArrowRight") { pan(0.25); }
    else { return; }
    event.preventDefault();
  });
  function canvasX(event) { return event.clientX - canvas.getBoundingClientRect().left; }
  function canvasY(event) { return event.clientY - canvas.getBoundingClientRect().top; }
  chart.addEventListener("wheel", function (event) {
    var dx = event.deltaX, dy = event.deltaY;
    if (event.deltaMode === 1) { dx *= 16; dy *= 16; }
    if (event.shiftKey || Math.abs(dx) > Math.abs(dy)) {
      pan((event.shiftKey ? dy || dx : dx) / plotW());
    } else {
      var x = Math.max(GUTTER, canvasX(event));
      zoomAt(Math.exp(dy * 0.0015), T(x));
    }
    event.preventDefault();
  }, { passive: false });
  chart.addEventListener("scroll", schedule);
  window.addEventListener("resize", function () { layout(); schedule(); });

  var drag = null;
  canvas.addEventListener("mousedown", function (event) {
    if (event.button !== 0) { return; }
    drag = { x: event.clientX, y: event.clientY, lo: viewLo, hi: viewHi, top: chart.scrollTop, moved: false };
    event.preventDefault();
  });
  window.addEventListener("mousemove", function (event) {
    if (!drag) { hover(event); return; }
    var dx = event.clientX - drag.x, dy = event.clientY - drag.y;
    if (Math.abs(dx) + Math.abs(dy) > 3) { drag.moved = true; chart.classList.add("dragging"); tip.hidden = true; }
    if (!drag.moved) { return; }
    var shift = -dx / plotW() * (drag.hi - drag.lo);
    setView(drag.lo + shift, drag.hi + shift);
    chart.scrollTop = drag.top - dy;
  });
  window.addEventListener("mouseup", function (event) {
    if (!drag) { return; }
    var click = !drag.moved;
    drag = null;
    chart.classList.remove("dragging");
    if (click) { pick(event); }
  });

  // ------------------------------------------------------------------ hit testing, tooltip, details
  var tip = document.getElementById("tip");
  var details = document.getElementById("details");
  function hit(event) {
    var x = canvasX(event), y = canvasY(event);
    if (x < GUTTER || y < AXIS_H || x > width || y > height) { return null; }
    var l = Math.floor((y - AXIS_H + chart.scrollTop) / LANE_H);
    if (l < 0 || l >= nLanes) { return null; }
    var t = T(x), tol = 4 * (viewHi - viewLo) / plotW(), best = null, bestDist = Infinity;
    laneAnomalies[l].forEach(function (idx) {
      var dist = Math.abs(A.t[idx] - t);
      if (dist <= tol && dist < bestDist) { best = idx; bestDist = dist; }
    });
    if (best !== null) { return { anomaly: best }; }
    if (laneTo[l] <= laneFrom[l]) { return null; }
    var tol1 = (viewHi - viewLo) / plotW();
    for (var r = firstFrom(l, t - tol1); r < laneTo[l] && S[r] <= t + tol1; r++) {
      if (E[r] >= t - tol1) { best = r; }
    }
    return best === null ? null : { run: best };
  }
  function runLines(r) {
    var flags = R.f[r] < 0 ? "" : D.flags[R.f[r]];
    var lines = [
      "order    " + D.orders[R.o[r]],
      "product  " + (R.p[r] < 0 ? "(none)" : D.products[R.p[r]]),
      "machine  " + D.machines[R.m[r]],
      "start    " + stamp(S[r]),
      "end      " + (OPEN[r] ? "open (still running at " + stamp(D.now) + ")" : stamp(E[r])),
      "duration " + duration(E[r] - S[r]) + (OPEN[r] ? " so far" : "")
    ];
    if (flags) { lines.push("flags    " + flags); }
    if (R.x && R.x[r]) { lines = lines.concat(R.x[r].split("\n")); }
    return lines;
  }
  function anomalyLines(idx) {
    return [
      "anomaly  " + A.kinds[A.k[idx]],
      "time     " + stamp(A.t[idx]),
      "machine  " + (A.m[idx] < 0 ? "(none)" : D.machines[A.m[idx]]),
      "order    " + (A.o[idx] === null ? "(none)" : A.o[idx]),
      "detail   " + (A.d[idx] === null ? "" : A.d[idx])
    ];
  }
  function hover(event) {
    if (event.target !== canvas) { tip.hidden = true; return; }
    var found = hit(event);
    if (!found) { tip.hidden = true; return; }
    tip.textContent = (found.run !== undefined ? runLines(found.run) : anomalyLines(found.anomaly)).join("\n");
    tip.hidden = false;
    var left = event.clientX + 14, topPx = event.clientY + 14;
    if (left + tip.offsetWidth > window.innerWidth - 8) { left = event.clientX - tip.offsetWidth - 14; }
    if (topPx + tip.offsetHeight > window.innerHeight - 8) { topPx = event.clientY - tip.offsetHeight - 14; }
    tip.style.left = left + "px";
    tip.style.top = topPx + "px";
  }
  canvas.addEventListener("mouseleave", function () { tip.hidden = true; });
  function pick(event) {
    var found = hit(event);
    selected = found;
    highlight = found && found.anomaly !== undefined ? found.anomaly : -1;
    if (!found) { details.textContent = "Click a run or an anomaly marker for its details."; }
    else if (found.run !== undefined) { details.textContent = runLines(found.run).join("\n"); }
    else { details.textContent = anomalyLines(found.anomaly).join("\n"); markRow(found.anomaly); }
    schedule();
  }

  // ------------------------------------------------------------------ summary, legend, table
  var title = D.title;
  document.getElementById("title").textContent = title;
  document.getElementById("subtitle").textContent = D.subtitle;
  var cards = document.getElementById("summary");
  D.cards.forEach(function (card) {
    var box = el("div", null, "card");
    box.appendChild(el("div", card[1], "value"));
    box.appendChild(el("div", card[0], "label"));
    cards.appendChild(box);
  });
  var kindsBox = document.getElementById("kinds");
  var kindNames = Object.keys(D.summary.anomalies);
  if (!kindNames.length) { kindsBox.appendChild(el("span", "no anomalies", "chip none")); }
  kindNames.forEach(function (kind) {
    var chip = el("span", kind + " " + D.summary.anomalies[kind], "chip");
    chip.addEventListener("click", function () { filter.value = kind; fillTable(); });
    kindsBox.appendChild(chip);
  });
  var legend = document.getElementById("legend");
  var shown = Math.min(D.products.length, 60);
  for (var p = 0; p < shown; p++) {
    var item = el("span");
    var swatch = el("span", null, "swatch");
    swatch.style.background = colours[p];
    item.appendChild(swatch);
    item.appendChild(document.createTextNode(D.products[p]));
    legend.appendChild(item);
  }
  if (D.products.length > shown) { legend.appendChild(el("span", "+ " + (D.products.length - shown) + " more", "muted")); }
  if (R.p.indexOf(-1) >= 0) {
    var none = el("span");
    var sw = el("span", null, "swatch");
    sw.style.background = NO_PRODUCT;
    none.appendChild(sw);
    none.appendChild(document.createTextNode("(no product)"));
    legend.appendChild(none);
  }

  var MAX_ROWS = 2000;
  var filter = document.getElementById("kind-filter");
  var tbody = document.querySelector("#anomalies tbody");
  var note2 = document.getElementById("table-note");
  document.getElementById("anomaly-count").textContent = "(" + NA + ")";
  filter.appendChild(el("option", "all kinds (" + NA + ")")).value = "";
  kindNames.forEach(function (kind) {
    filter.appendChild(el("option", kind + " (" + D.summary.anomalies[kind] + ")")).value = kind;
  });
  var rowOf = {};
  function fillTable() {
    var want = filter.value, shownRows = 0, matching = 0;
    tbody.textContent = "";
    rowOf = {};
    for (var idx = 0; idx < NA; idx++) {
      if (want && A.kinds[A.k[idx]] !== want) { continue; }
      matching += 1;
      if (shownRows >= MAX_ROWS) { continue; }
      shownRows += 1;
      var tr = el("tr");
      tr.appendChild(el("td", stamp(A.t[idx]), "time"));
      tr.appendChild(el("td", A.kinds[A.k[idx]], "kind"));
      tr.appendChild(el("td", A.m[idx] < 0 ? "" : D.machines[A.m[idx]]));
      tr.appendChild(el("td", A.o[idx] === null ? "" : A.o[idx]));
      tr.appendChild(el("td", A.d[idx] === null ? "" : A.d[idx], "detail"));
      tr.setAttribute("data-index", String(idx));
      rowOf[idx] = tr;
      tbody.appendChild(tr);
    }
    note2.textContent = matching > shownRows ? "showing the first " + shownRows + " of " + matching + "; pick a kind to narrow" : "";
    if (!NA) { note2.textContent = "none"; }
  }
  filter.addEventListener("change", fillTable);
  function markRow(idx) {
    var old = tbody.querySelector("tr.selected");
    if (old) { old.classList.remove("selected"); }
    if (rowOf[idx]) { rowOf[idx].classList.add("selected"); }
  }
  tbody.addEventListener("click", function (event) {
    var tr = event.target.closest && event.target.closest("tr");
    if (!tr) { return; }
    var idx = Number(tr.getAttribute("data-index"));
    markRow(idx);
    highlight = idx;
    selected = { anomaly: idx };
    details.textContent = anomalyLines(idx).join("\n");
    if (A.t[idx] !== null) {
      var span = Math.min(viewHi - viewLo, DAY);
      setView(A.t[idx] - span / 2, A.t[idx] + span / 2);
      var l = A.m[idx] < 0 ? noMachineLane : A.m[idx];
      var want = l * LANE_H - (height - AXIS_H) / 2;
      chart.scrollTop = Math.max(0, want);
      chart.scrollIntoView({ block: "nearest" });
    }
  });

  // ------------------------------------------------------------------ self-test (report.html#selftest)
  // Zooms and pans through the data the way a user would and records the slowest frame, then
  // drives the controls with synthetic events; the results land in body attributes for the tests.
  function selftest() {
    var failures = [];
    function check(ok, what) { if (!ok) { failures.push(what); } }
    var worst = 0, spans = [extHi - extLo, 28 * DAY, 7 * DAY, DAY, 3 * 3600];
    spans.forEach(function (span) {
      for (var step = 0; step < 4; step++) {
        viewLo = extLo + (extHi - extLo - span) * step / 3;
        viewHi = viewLo + span;
        chart.scrollTop = step * 0.3 * Math.max(0, contentH - height);
        var began = performance.now();
        draw();
        worst = Math.max(worst, performance.now() - began);
      }
    });
    body.setAttribute("data-bench-worst-ms", worst.toFixed(1));
    chart.scrollTop = 0;
    var box = canvas.getBoundingClientRect();
    function fire(target, type, x, y, extra) {
      var init = { bubbles: true, cancelable: true, clientX: box.left + x, clientY: box.top + y, button: 0 };
      for (var key in extra || {}) { init[key] = extra[key]; }
      target.dispatchEvent(type === "wheel" ? new WheelEvent(type, init) : new MouseEvent(type, init));
    }
    // the longest closed run of the first lane that has runs, shown at four times its length
    var target = -1;
    for (var l = 0; l < nLanes && target < 0; l++) {
      for (var r = laneFrom[l]; r < laneTo[l]; r++) {
        if (!OPEN[r] && E[r] > S[r] && (target < 0 || E[r] - S[r] > E[target] - S[target])) { target = r; }
      }
    }
    if (target >= 0) {
      var mid = (S[target] + E[target]) / 2, half = Math.max(MIN_SPAN, 4 * (E[target] - S[target])) / 2;
      viewLo = mid - half; viewHi = mid + half;
      chart.scrollTop = Math.max(0, R.m[target] * LANE_H - (height - AXIS_H) / 2);
    }
    draw();
    if (N > 0) {
      check(target >= 0, "no visible run to point at");
      if (target >= 0) {
        var rx = (X(S[target]) + X(E[target])) / 2, ry = laneY(R.m[target]) + LANE_H / 2;
        fire(canvas, "mousemove", rx, ry);
        check(!tip.hidden && tip.textContent.indexOf(D.orders[R.o[target]]) >= 0, "hover shows no tooltip for the run");
        fire(canvas, "mousedown", rx, ry);
        fire(window, "mouseup", rx, ry);
        check(details.textContent.indexOf("order    " + D.orders[R.o[target]]) === 0, "click does not show the run's details");
        var span0 = viewHi - viewLo;
        fire(canvas, "wheel", rx, ry, { deltaY: -400 });
        check(viewHi - viewLo < span0 * 0.9, "wheel does not zoom in");
        var lo0 = viewLo;
        fire(canvas, "mousedown", rx, ry);
        fire(window, "mousemove", rx - 120, ry);
        fire(window, "mouseup", rx - 120, ry);
        check(viewLo > lo0, "dragging left does not move later in time");
      }
    }
    document.querySelector('[data-action="week"]').click();
    check(Math.abs(viewHi - viewLo - Math.min(7 * DAY, MAX_SPAN)) < 1, "'1 week' does not show a week");
    document.querySelector('[data-action="fit"]').click();
    check(viewLo <= extLo + 1 && viewHi >= extHi - 1, "'Fit all' does not show everything");
    if (NA > 0) {
      var row = tbody.querySelector("tr");
      row.click();
      var idx = Number(row.getAttribute("data-index"));
      check(highlight === idx && details.textContent.indexOf(A.kinds[A.k[idx]]) >= 0, "clicking an anomaly row does not select it");
      filter.value = A.kinds[A.k[idx]];
      filter.dispatchEvent(new Event("change"));
      check(tbody.children.length === Math.min(MAX_ROWS, D.summary.anomalies[filter.value]), "the kind filter shows the wrong rows");
      filter.value = "";
      filter.dispatchEvent(new Event("change"));
    }
    tip.hidden = true;
    selected = null; highlight = -1;
    viewLo = lo - viewPad; viewHi = Math.max(hi, lo + 3600) + viewPad;
    draw();
    body.setAttribute("data-selftest", failures.length ? "failed: " + failures.join("; ") : "ok");
  }

  // ------------------------------------------------------------------ first draw, then report the status
  layout();
  fillTable();
  draw();
  body.setAttribute("data-runs-total", String(N));
  body.setAttribute("data-anomalies-total", String(NA));
  body.setAttribute("data-lanes", String(nLanes));
  body.setAttribute("data-ready-ms", (performance.now() - started).toFixed(1));
  if (location.hash === "#selftest") { selftest(); }
  body.setAttribute("data-runs-drawn", String(lastDrawn));
  body.setAttribute("data-status", "ready");
})();
