// Run lists (runs/run_list.html, pipelines/pipeline_detail.html): "select all" on the page and
// a compare button that waits for two runs. Without JS every checkbox still submits to compare.
(function () {
  "use strict";
  var form = document.getElementById("run-compare-form");
  if (!form) return;
  var button = document.getElementById("compare-button");
  var hint = document.getElementById("compare-hint");
  var all = document.getElementById("select-all");
  function boxes() {
    return Array.prototype.slice.call(form.querySelectorAll("input.run-select"));
  }
  function update() {
    var ticked = boxes().filter(function (b) { return b.checked; }).length;
    button.disabled = ticked < 2;
    if (hint) {
      hint.textContent = ticked < 2
        ? "Tick two or more runs to compare them."
        : ticked + " runs selected.";
    }
    if (all) {
      all.checked = ticked > 0 && ticked === boxes().length;
      all.indeterminate = ticked > 0 && ticked < boxes().length;
    }
  }
  if (all) {
    all.hidden = boxes().length === 0;
    all.addEventListener("change", function () {
      boxes().forEach(function (b) { b.checked = all.checked; });
      update();
    });
  }
  form.addEventListener("change", function (event) {
    if (event.target !== all) update();
  });
  update();
})();
