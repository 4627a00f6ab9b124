// The review page's only script (served from this package: CSP script-src 'self', nothing inline).
// The before/after slider, and keyboard shortcuts: a approve, r reject, j or n next, k previous,
// x select. Everything also works without it, with the forms' buttons.
(function () {
  "use strict";

  function setupSliders() {
    document.querySelectorAll(".slider").forEach(function (slider) {
      var range = slider.querySelector("input[type=range]");
      var after = slider.querySelector(".slider-after");
      function show() { after.style.clipPath = "inset(0 0 0 " + range.value + "%)"; }
      range.addEventListener("input", show);
      show();
    });
  }

  function items() { return Array.prototype.slice.call(document.querySelectorAll("article.item[data-image]")); }

  var current = 0;
  function focusItem(index) {
    var all = items();
    if (!all.length) { return; }
    current = Math.max(0, Math.min(index, all.length - 1));
    all.forEach(function (item, i) { item.classList.toggle("current", i === current); });
    all[current].focus({ preventScroll: true });
    all[current].scrollIntoView({ block: "nearest" });
  }

  function submit(selector) {
    var item = items()[current];
    if (!item) { return; }
    var form = item.querySelector(selector);
    if (form) { form.requestSubmit ? form.requestSubmit() : form.submit(); }
  }

  function onKey(event) {
    var target = event.target;
    if (event.ctrlKey || event.metaKey || event.altKey) { return; }
    if (target && (target.tagName === "INPUT" && target.type === "text" || target.tagName === "TEXTAREA")) { return; }
    switch (event.key) {
      case "a": submit("form.approve"); break;
      case "r": submit("form.reject"); break;
      case "j": case "n": focusItem(current + 1); break;
      case "k": focusItem(current - 1); break;
      case "x":
        var box = items()[current] && items()[current].querySelector("input[type=checkbox]");
        if (box) { box.checked = !box.checked; }
        break;
      default: return;
    }
    event.preventDefault();
  }

  document.addEventListener("DOMContentLoaded", function () {
    setupSliders();
    if (items().length) {
      focusItem(0);
      document.addEventListener("keydown", onKey);
    }
  });
})();
