// Pipeline graph (templates/runs/_dag.html): a "Fit to width" toggle. Without JS the graph
// scrolls at natural size, which is the readable view for big pipelines.
(function () {
  "use strict";
  document.querySelectorAll(".dag-frame").forEach(function (frame) {
    var button = frame.querySelector("[data-dag-fit]");
    if (!button) return;
    button.hidden = false;
    button.addEventListener("click", function () {
      var fit = frame.classList.toggle("dag-fit");
      button.setAttribute("aria-pressed", fit ? "true" : "false");
      button.textContent = fit ? "Actual size" : "Fit to width";
    });
  });
})();
