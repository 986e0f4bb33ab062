// Compare page: each metric series of the chosen runs overlaid on one chart (uPlot), one
// colour per run, the same colours as the swatches in the table header. The tables need no JS.
(function () {
  "use strict";

  var PALETTE = ["#0d6efd", "#dc3545", "#198754", "#fd7e14", "#6f42c1", "#20c997", "#d63384", "#6c757d", "#997404", "#0dcaf0"];
  var node = document.getElementById("compare-data");
  if (!node || typeof uPlot === "undefined") return;
  var data = JSON.parse(node.textContent);

  document.querySelectorAll(".compare-swatch").forEach(function (swatch) {
    swatch.style.backgroundColor = PALETTE[parseInt(swatch.dataset.index, 10) % PALETTE.length];
  });

  var plots = [];
  document.querySelectorAll(".compare-chart").forEach(function (figure) {
    var chart = data.charts[parseInt(figure.dataset.index, 10)];
    var box = figure.querySelector(".chart-box");
    if (!chart || !box) return;
    var longest = 0;
    chart.series.forEach(function (points) {
      longest = Math.max(longest, points.length);
    });
    var xs = [];
    for (var i = 1; i <= longest; i++) xs.push(i);
    var columns = [xs];
    var series = [{ label: "logged" }];
    chart.series.forEach(function (points, index) {
      var ys = xs.map(function (_, i) {
        return i < points.length ? points[i] : null;
      });
      columns.push(ys);
      series.push({
        label: data.runs[index],
        stroke: PALETTE[index % PALETTE.length],
        width: 2,
        points: { show: longest <= 50 },
      });
    });
    var plot = new uPlot(
      {
        width: Math.max(260, Math.floor(box.getBoundingClientRect().width)),
        height: 240,
        scales: { x: { time: false } },
        cursor: { drag: { x: true, y: false } },
        series: series,
        axes: [{ label: "logged", size: 40 }, { size: 60 }],
      },
      columns,
      box
    );
    figure.dataset.points = String(longest);
    plots.push({ plot: plot, box: box });
  });

  window.addEventListener("resize", function () {
    plots.forEach(function (p) {
      p.plot.setSize({ width: Math.max(260, Math.floor(p.box.getBoundingClientRect().width)), height: 240 });
    });
  });
})();
