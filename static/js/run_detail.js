// Run page and step page: one websocket per page (ws/runs/<uuid>/) carries step and run
// statuses, log lines and metric points. Lines carry per-step sequence numbers; the page keeps
// the last one it has for every step and sends them on each (re)connect, so the server
// replays exactly what is missing: no gap, no duplicate. Log text only ever goes through
// textContent. Without JS the page is complete, just not live.
(function () {
  "use strict";

  var root = document.getElementById("run");
  if (!root) return;

  var LABELS = { NotStarted: "Not started", CancelRequested: "Cancel requested" };
  var TERMINAL = ["Completed", "Failed", "Canceled"];
  var BUFFER_LINES = 10000; // per step, for a panel opened later
  var PANE_LINES = 20000; // lines kept in a log pane; the download has everything
  var CHART_COLOUR = "#0d6efd";
  var CLOSE_FINAL = [4401, 4404, 4403];

  var seqsNode = document.getElementById("run-seqs");
  var seqs = seqsNode ? JSON.parse(seqsNode.textContent) : {};
  var buffers = {};
  var panel = null;
  var charts = {};
  var values = {};
  var query = "";
  var refreshTimer = null;
  var socket = null;
  var opened = false;
  var retries = 0;

  function isTerminal(status) {
    return TERMINAL.indexOf(status) >= 0;
  }

  function setBadge(container, status) {
    var badge = container && container.querySelector(".status-badge");
    if (!badge || !status) return;
    badge.classList.remove("status-" + badge.dataset.status);
    badge.classList.add("status-" + status);
    badge.dataset.status = status;
    badge.textContent = LABELS[status] || status;
  }

  function liveState(text) {
    var node = document.getElementById("live-state");
    if (node) node.textContent = text;
  }

  function rowOf(step) {
    return document.getElementById("step-row-" + step);
  }

  // --- log panes ------------------------------------------------------------------------------

  function paneFor(logName) {
    return document.getElementById(logName === "driver" ? "log-driver" : "log-system");
  }

  function atBottom(pane) {
    return pane.scrollTop + pane.clientHeight >= pane.scrollHeight - 8;
  }

  function textOf(line) {
    if (line._text === undefined) line._text = line.querySelector(".log-text").textContent;
    return line._text;
  }

  // Filter and highlight one line for the current search; returns whether it matches.
  function applySearch(line) {
    var text = textOf(line);
    var target = line.querySelector(".log-text");
    if (line._marked) {
      target.textContent = text;
      line._marked = false;
    }
    if (!query) {
      line.classList.remove("log-hidden");
      return true;
    }
    var lower = text.toLowerCase();
    var at = lower.indexOf(query);
    if (at < 0) {
      line.classList.add("log-hidden");
      return false;
    }
    line.classList.remove("log-hidden");
    target.textContent = "";
    var pos = 0;
    while (at >= 0) {
      target.appendChild(document.createTextNode(text.slice(pos, at)));
      var mark = document.createElement("mark");
      mark.textContent = text.slice(at, at + query.length);
      target.appendChild(mark);
      pos = at + query.length;
      at = lower.indexOf(query, pos);
    }
    target.appendChild(document.createTextNode(text.slice(pos)));
    line._marked = true;
    return true;
  }

  function countMatches() {
    var out = document.getElementById("log-matches");
    if (!out) return;
    if (!query) {
      out.textContent = "";
      return;
    }
    var n = document.querySelectorAll("#step-panel .log-line:not(.log-hidden)").length;
    out.textContent = n + (n === 1 ? " matching line" : " matching lines");
  }

  function searchAll() {
    document.querySelectorAll("#step-panel .log-line").forEach(applySearch);
    countMatches();
    document.querySelectorAll("#step-panel .log-pane").forEach(function (pane) {
      if (pane._pinned !== false) pane.scrollTop = pane.scrollHeight;
    });
  }

  function showFollow(pane) {
    var button = document.getElementById("log-follow");
    if (button && pane.id === "log-driver") button.classList.toggle("d-none", pane._pinned !== false);
  }

  function makeLine(line) {
    // line: [seq, stream, text, log]
    var div = document.createElement("div");
    div.className = "log-line" + (line[1] === "stderr" ? " log-stderr" : "");
    div.dataset.seq = line[0];
    var seq = document.createElement("span");
    seq.className = "log-seq";
    seq.setAttribute("aria-hidden", "true");
    seq.textContent = line[3] === "driver" ? line[0] : line[3];
    var text = document.createElement("span");
    text.className = "log-text";
    text.textContent = line[2];
    div._text = String(line[2]);
    div.appendChild(seq);
    div.appendChild(text);
    applySearch(div);
    return div;
  }

  // Append lines of the open step after the last one it shows.
  function appendLines(lines) {
    var batches = {};
    lines.forEach(function (line) {
      if (line[0] <= panel.shown) return;
      panel.shown = line[0];
      var pane = paneFor(line[3]);
      if (!pane) return;
      var key = pane.id;
      if (!batches[key]) batches[key] = { pane: pane, fragment: document.createDocumentFragment() };
      batches[key].fragment.appendChild(makeLine(line));
    });
    Object.keys(batches).forEach(function (key) {
      var pane = batches[key].pane;
      // Measured before appending: a scroll up whose event has not fired yet still counts.
      var follow = pane._pinned !== false && atBottom(pane);
      var empty = pane.querySelector(".log-empty");
      if (empty) empty.remove();
      pane.appendChild(batches[key].fragment);
      while (pane.childElementCount > PANE_LINES) pane.firstElementChild.remove();
      if (follow) {
        pane.scrollTop = pane.scrollHeight;
      } else {
        pane._pinned = false;
        showFollow(pane);
      }
    });
    if (query) countMatches();
  }

  function remember(step, lines) {
    var buffer = buffers[step] || (buffers[step] = []);
    Array.prototype.push.apply(buffer, lines);
    if (buffer.length > BUFFER_LINES) buffer.splice(0, buffer.length - BUFFER_LINES);
  }

  // --- metrics ----------------------------------------------------------------------------------

  function formatValue(value) {
    if (typeof value === "number" && !Number.isInteger(value)) {
      return String(Number(value.toPrecision(6)));
    }
    if (value === null || value === undefined) return "—";
    return String(value);
  }

  function drawChart(figure, name, points) {
    var box = figure.querySelector(".chart-box");
    if (!box || typeof uPlot === "undefined") return;
    box.textContent = "";
    var xs = points.map(function (_, i) {
      return i + 1;
    });
    var width = Math.max(240, Math.floor(box.getBoundingClientRect().width) || 320);
    var plot = new uPlot(
      {
        width: width,
        height: 200,
        legend: { show: false },
        cursor: { drag: { x: false, y: false } },
        scales: { x: { time: false } },
        series: [
          { label: "n" },
          { label: name, stroke: CHART_COLOUR, width: 2, points: { show: points.length <= 50 } },
        ],
        axes: [{ label: "logged", size: 40 }, { size: 60 }],
      },
      [xs, points.slice()],
      box
    );
    charts[name] = { plot: plot, figure: figure, pending: false };
    figure.dataset.points = String(points.length);
  }

  function chartFigure(name) {
    var holder = document.getElementById("metric-charts");
    if (!holder) return null;
    var found = null;
    holder.querySelectorAll(".metric-chart").forEach(function (fig) {
      if (fig.dataset.metric === name) found = fig;
    });
    if (found) return found;
    var fig = document.createElement("figure");
    fig.className = "col-md-6 metric-chart mb-0";
    fig.dataset.metric = name;
    var caption = document.createElement("figcaption");
    caption.className = "small fw-semibold";
    caption.textContent = name;
    var box = document.createElement("div");
    box.className = "chart-box";
    fig.appendChild(caption);
    fig.appendChild(box);
    holder.appendChild(fig);
    return fig;
  }

  function redrawSoon(name) {
    var chart = charts[name];
    if (!chart || chart.pending) return;
    chart.pending = true;
    requestAnimationFrame(function () {
      chart.pending = false;
      var ys = values[name];
      chart.plot.setData([
        ys.map(function (_, i) {
          return i + 1;
        }),
        ys.slice(),
      ]);
      chart.figure.dataset.points = String(ys.length);
    });
  }

  function scalarRow(name) {
    var table = document.getElementById("metrics-scalars");
    if (!table) return null;
    var found = null;
    table.querySelectorAll("tbody tr").forEach(function (tr) {
      if (tr.dataset.metric === name) found = tr;
    });
    if (found) return found;
    var tr = document.createElement("tr");
    tr.dataset.metric = name;
    ["", "metric-last", "text-end metric-count"].forEach(function (cls, i) {
      var td = document.createElement("td");
      if (cls) td.className = cls;
      if (i === 0) td.textContent = name;
      if (i === 2) td.textContent = "0";
      tr.appendChild(td);
    });
    table.querySelector("tbody").appendChild(tr);
    table.classList.remove("d-none");
    var empty = document.getElementById("metrics-empty");
    if (empty) empty.remove();
    return tr;
  }

  function onScalar(name, value) {
    var tr = scalarRow(name);
    if (tr) {
      tr.querySelector(".metric-last").textContent = formatValue(value);
      var count = tr.querySelector(".metric-count");
      count.textContent = String((parseInt(count.textContent, 10) || 0) + 1);
    }
    if (typeof value !== "number") return;
    var series = values[name] || (values[name] = []);
    series.push(value);
    if (charts[name]) redrawSoon(name);
    else if (series.length >= 2) {
      var fig = chartFigure(name);
      if (fig) drawChart(fig, name, series);
    }
  }

  function drawAllCharts() {
    charts = {};
    var node = document.getElementById("metric-series");
    var data = node ? JSON.parse(node.textContent) : {};
    values = {};
    Object.keys(data.scalars || {}).forEach(function (name) {
      values[name] = data.scalars[name].slice();
    });
    document.querySelectorAll("#metric-charts .metric-chart").forEach(function (fig) {
      var name = fig.dataset.metric;
      var points = (data.scalars || {})[name] || (data.lists || {})[name] || [];
      drawChart(fig, name, points);
    });
  }

  // --- the panel --------------------------------------------------------------------------------

  function markSelected() {
    document.querySelectorAll("#steps .step-row").forEach(function (tr) {
      tr.classList.toggle("table-active", !!panel && tr.dataset.step === panel.step);
    });
  }

  // After the panel is rendered or swapped in: continue its logs from the buffer.
  function attachPanel(first) {
    var el = document.getElementById("step-panel");
    if (!el) {
      panel = null;
      return;
    }
    panel = {
      el: el,
      step: el.dataset.step,
      shown: parseInt(el.dataset.shownSeq, 10) || 0,
      metricSeq: parseInt(el.dataset.metricSeq, 10) || 0,
      live: el.dataset.live === "true",
    };
    if (first && panel.live) seqs[panel.step] = panel.shown;
    var search = document.getElementById("log-search");
    if (search && query) search.value = query;
    el.querySelectorAll(".log-pane").forEach(function (pane) {
      pane._pinned = true;
    });
    if (panel.live) {
      var buffered = (buffers[panel.step] || []).filter(function (line) {
        return line[0] > panel.shown;
      });
      if (buffered.length) appendLines(buffered);
    }
    searchAll();
    drawAllCharts();
    markSelected();
  }

  // Re-render everything in the panel except the log panes and their toolbar, which keep
  // their lines, scroll position and search (used when a step ends or non-scalar metrics come).
  function softRefresh() {
    if (!panel) return;
    var step = panel.step;
    fetch(panel.el.dataset.panelUrl, { headers: { "HX-Request": "true" }, credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) throw new Error(response.status);
        return response.text();
      })
      .then(function (html) {
        if (!panel || panel.step !== step) return;
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById("step-panel");
        if (!fresh) return;
        fresh = document.adoptNode(fresh);
        ["log-driver", "log-system"].forEach(function (id) {
          var old = document.getElementById(id);
          var neu = fresh.querySelector("#" + id);
          if (old && neu) neu.replaceWith(old);
        });
        var oldBar = panel.el.querySelector(".log-toolbar");
        var newBar = fresh.querySelector(".log-toolbar");
        if (oldBar && newBar) newBar.replaceWith(oldBar);
        ["system-logs", "snapshot"].forEach(function (id) {
          var old = document.getElementById(id);
          var neu = fresh.querySelector("#" + id);
          if (old && neu) neu.open = old.open;
        });
        var shown = panel.shown;
        var metricSeq = panel.metricSeq;
        panel.el.replaceWith(fresh);
        panel.el = fresh;
        panel.live = fresh.dataset.live === "true";
        panel.shown = Math.max(shown, parseInt(fresh.dataset.shownSeq, 10) || 0);
        panel.metricSeq = Math.max(metricSeq, parseInt(fresh.dataset.metricSeq, 10) || 0);
        drawAllCharts();
      })
      .catch(function () {
        /* the next event or a reload shows it */
      });
  }

  function softRefreshSoon() {
    if (refreshTimer) return;
    refreshTimer = setTimeout(function () {
      refreshTimer = null;
      softRefresh();
    }, 800);
  }

  function refreshRow(step) {
    var row = rowOf(step);
    if (!row) return;
    fetch(row.dataset.rowUrl, { credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) throw new Error(response.status);
        return response.text();
      })
      .then(function (html) {
        var doc = new DOMParser().parseFromString("<table><tbody>" + html + "</tbody></table>", "text/html");
        var fresh = doc.querySelector("tr.step-row");
        var current = rowOf(step);
        if (!fresh || !current) return;
        fresh = document.adoptNode(fresh);
        current.replaceWith(fresh);
        if (window.htmx) htmx.process(fresh);
        markSelected();
      })
      .catch(function () {});
  }

  // --- messages ---------------------------------------------------------------------------------

  function onStepStatus(msg) {
    var row = rowOf(msg.step);
    if (row) {
      row.dataset.status = msg.status;
      setBadge(row.querySelector(".step-status"), msg.status);
    }
    document.querySelectorAll(".dag-node").forEach(function (node) {
      if (node.dataset.step === msg.name) {
        node.dataset.status = msg.status;
        if (msg.reused_from) node.dataset.reused = "true";
      }
    });
    if (panel && panel.step === msg.step) {
      setBadge(document.getElementById("step-panel-status"), msg.status);
      if (isTerminal(msg.status)) softRefresh();
    }
    if (isTerminal(msg.status)) refreshRow(msg.step);
  }

  function onRunStatus(msg) {
    root.dataset.status = msg.status;
    setBadge(document.getElementById("run-status"), msg.status);
    if (isTerminal(msg.status)) {
      var cancel = document.getElementById("cancel-form");
      if (cancel) cancel.remove();
      liveState("finished");
      showFinished();
    }
  }

  // The header's end time and duration, read once the run has ended.
  function showFinished() {
    var url = "/api/v1/workspaces/" + root.dataset.workspace + "/runs/" + root.dataset.run + "/";
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) throw new Error(response.status);
        return response.json();
      })
      .then(function (run) {
        var cell = document.getElementById("run-finished");
        if (!cell || !run.finished_at) return;
        var when = new Date(run.finished_at);
        cell.textContent = when.toISOString().replace("T", " ").slice(0, 19);
        if (typeof run.duration_seconds === "number") {
          var took = document.createElement("span");
          took.className = "text-body-secondary";
          took.textContent = " (took " + humanDuration(run.duration_seconds) + ")";
          cell.appendChild(took);
        }
      })
      .catch(function () {
        liveState("finished: reload for the final timings");
      });
  }

  function humanDuration(seconds) {
    if (seconds < 1) return Math.round(seconds * 1000) + " ms";
    if (seconds < 60) return seconds.toFixed(1) + " s";
    var minutes = Math.floor(seconds / 60);
    if (minutes < 60) return minutes + " min " + Math.round(seconds % 60) + " s";
    return Math.floor(minutes / 60) + " h " + (minutes % 60) + " min";
  }

  function onLogLines(msg) {
    var lines = msg.lines.map(function (line) {
      return [line[0], line[1], line[2], msg.log];
    });
    if (!lines.length) return;
    var last = lines[lines.length - 1][0];
    seqs[msg.step] = Math.max(seqs[msg.step] || 0, last);
    remember(msg.step, lines);
    if (panel && panel.step === msg.step && panel.live) appendLines(lines);
  }

  function onMetric(msg) {
    if (!panel || panel.step !== msg.step) return;
    // Points carry their id: one already drawn (replayed after a reconnect) is skipped.
    if (typeof msg.seq === "number") {
      if (msg.seq <= panel.metricSeq) return;
      panel.metricSeq = msg.seq;
    }
    if (msg.kind === "scalar") onScalar(msg.name, msg.value);
    else softRefreshSoon();
  }

  // Once connected, statuses that changed before the channel was joined (between the page's
  // render and now, or while we were away) are read once; after a reconnect the panel too.
  function resync(panelToo) {
    if (panelToo) softRefresh();
    var url = "/api/v1/workspaces/" + root.dataset.workspace + "/runs/" + root.dataset.run + "/";
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) throw new Error(response.status);
        return response.json();
      })
      .then(function (run) {
        onRunStatus({ status: run.status });
        (run.steps || []).forEach(function (step) {
          var row = rowOf(step.id);
          if (row && row.dataset.status !== step.status) {
            onStepStatus({ step: step.id, name: step.name, status: step.status, reused_from: step.reused_from });
          }
        });
      })
      .catch(function () {});
  }

  function connect() {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + location.host + root.dataset.wsPath);
    socket.addEventListener("open", function () {
      var metricsAfter = {};
      if (panel) metricsAfter[panel.step] = panel.metricSeq;
      socket.send(JSON.stringify({ type: "follow", after: seqs, metrics_after: metricsAfter }));
      liveState("● live");
      resync(opened);
      opened = true;
      retries = 0;
    });
    socket.addEventListener("message", function (event) {
      var msg = JSON.parse(event.data);
      if (msg.type === "log_lines") onLogLines(msg);
      else if (msg.type === "step_status") onStepStatus(msg);
      else if (msg.type === "run_status") onRunStatus(msg);
      else if (msg.type === "metric") onMetric(msg);
    });
    socket.addEventListener("close", function (event) {
      if (CLOSE_FINAL.indexOf(event.code) >= 0) {
        liveState("live updates unavailable: reload the page");
        return;
      }
      liveState("reconnecting…");
      retries += 1;
      setTimeout(connect, Math.min(10000, 500 * Math.pow(2, retries - 1)));
    });
  }

  // --- events -----------------------------------------------------------------------------------

  document.addEventListener(
    "scroll",
    function (event) {
      var pane = event.target;
      if (!pane.classList || !pane.classList.contains("log-pane")) return;
      pane._pinned = atBottom(pane);
      showFollow(pane);
    },
    true
  );

  var searchTimer = null;
  document.addEventListener("input", function (event) {
    if (event.target.id !== "log-search") return;
    clearTimeout(searchTimer);
    searchTimer = setTimeout(function () {
      query = event.target.value.toLowerCase();
      searchAll();
    }, 120);
  });

  document.addEventListener("click", function (event) {
    var follow = event.target.closest("#log-follow");
    if (follow) {
      var pane = document.getElementById("log-driver");
      pane._pinned = true;
      pane.scrollTop = pane.scrollHeight;
      showFollow(pane);
      return;
    }
    // A box in the graph opens its step in the panel, like the step list does.
    var link = event.target.closest(".dag-node a");
    if (link && window.htmx) {
      var node = link.closest(".dag-node");
      var row = null;
      document.querySelectorAll("#steps .step-row").forEach(function (tr) {
        if (tr.dataset.name === node.dataset.step) row = tr;
      });
      var target = row && row.querySelector(".step-link");
      if (target) {
        event.preventDefault();
        target.click();
      }
    }
  });

  document.body.addEventListener("htmx:afterSwap", function (event) {
    if (event.detail.target && event.detail.target.id === "step-panel-slot") attachPanel(false);
  });
  document.body.addEventListener("htmx:historyRestore", function () {
    attachPanel(false);
  });

  window.addEventListener("resize", function () {
    Object.keys(charts).forEach(function (name) {
      var chart = charts[name];
      var box = chart.figure.querySelector(".chart-box");
      if (box) chart.plot.setSize({ width: Math.max(240, Math.floor(box.getBoundingClientRect().width)), height: 200 });
    });
  });

  attachPanel(true);
  if (!isTerminal(root.dataset.status) && "WebSocket" in window) connect();
})();
