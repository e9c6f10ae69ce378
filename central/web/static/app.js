// Quire console: keyboard paging and zoom in the page viewer, keyboard judging in QC. No inline script
// anywhere (the CSP forbids it); everything the pages do in the browser is here.
"use strict";

(function () {
  function typing(event) {
    const t = event.target;
    return t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT");
  }

  // ---- page viewer: ← → (PageUp/PageDown) turn pages, + − 0 zoom --------------------------------
  const page = document.getElementById("page");
  if (page) {
    let zoom = 1;
    const apply = function () {
      page.style.width = zoom === 1 ? "" : Math.round(zoom * 100) + "%";
      page.style.maxWidth = zoom === 1 ? "" : "none";
      page.style.maxHeight = zoom === 1 ? "" : "none";
      page.dataset.zoom = String(zoom);
    };
    const setZoom = function (step) {
      zoom = step === 0 ? 1 : Math.min(4, Math.max(0.5, zoom * (step > 0 ? 1.25 : 0.8)));
      apply();
    };
    document.querySelectorAll("[data-zoom]").forEach(function (b) {
      b.addEventListener("click", function () { setZoom(Number(b.dataset.zoom)); });
    });
    document.addEventListener("keydown", function (e) {
      if (typing(e) || e.altKey || e.ctrlKey || e.metaKey) return;
      const go = function (id) { const a = document.getElementById(id); if (a) { e.preventDefault(); a.click(); } };
      if (e.key === "ArrowRight" || e.key === "PageDown" || e.key === " ") go("next");
      else if (e.key === "ArrowLeft" || e.key === "PageUp") go("prev");
      else if (e.key === "+" || e.key === "=") setZoom(1);
      else if (e.key === "-") setZoom(-1);
      else if (e.key === "0") setZoom(0);
    });
  }

  // ---- QC: G good, B bad (then 1–9 picks the reason), ← → move through the sample -------------------
  const qc = document.getElementById("qc");
  if (qc) {
    document.addEventListener("keydown", function (e) {
      if (typing(e) || e.altKey || e.ctrlKey || e.metaKey) return;
      const click = function (sel) { const el = qc.querySelector(sel); if (el) { e.preventDefault(); el.click(); } };
      const key = e.key.toLowerCase();
      if (key === "g") click("#judge-good");
      else if (key === "b") { const r = qc.querySelector("#reasons"); if (r) { r.hidden = false; e.preventDefault(); } }
      else if (/^[1-9]$/.test(key)) click('#reasons button[data-key="' + key + '"]');
      else if (key === "arrowright") click("#qc-next");
      else if (key === "arrowleft") click("#qc-prev");
      else if (key === "d") click("#qc-decide");
    });
    const bad = qc.querySelector("#judge-bad");
    if (bad) bad.addEventListener("click", function () { qc.querySelector("#reasons").hidden = false; });
  }

  // ---- any form asking for a confirmation first -------------------------------------------------
  document.querySelectorAll("form[data-confirm]").forEach(function (f) {
    f.addEventListener("submit", function (e) { if (!window.confirm(f.dataset.confirm)) e.preventDefault(); });
  });
})();
