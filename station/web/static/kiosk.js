// The kiosk screen: thumbnails and the live panel follow the station's event stream (no inline script:
// the page's CSP allows scripts from the station only).
(function () {
  "use strict";
  var body = document.body;
  if (!body.dataset.events) { return; }
  var pages = document.getElementById("pages");
  var live = document.getElementById("live");
  var notice = document.getElementById("notice");
  var source = new EventSource(body.dataset.events);

  function fragment(html) {
    var holder = document.createElement("div");
    holder.innerHTML = html;
    return holder.firstElementChild;
  }
  source.addEventListener("page", function (e) {
    var figure = fragment(e.data);
    var old = document.getElementById(figure.id);
    // A dossier feed's page goes into its material's group, whose count follows.
    var group = figure.dataset.group && document.getElementById("g-" + figure.dataset.group);
    var into = group ? group.querySelector(".material-pages") : pages;
    if (old) { old.replaceWith(figure); } else { into.appendChild(figure); }
    if (group) { group.querySelector(".found").textContent = String(into.children.length); }
    figure.scrollIntoView({block: "nearest"});
  });
  source.addEventListener("material", function (e) {
    // A dossier feed: a cover sheet read starts a material's group (the sheet its separator), or a material
    // sealed or kept for review shows its count and state.
    var section = fragment(e.data);
    var old = document.getElementById(section.id);
    if (old) { old.replaceWith(section); } else { pages.appendChild(section); }
    section.scrollIntoView({block: "nearest"});
  });
  source.addEventListener("batch", function (e) {
    // Another material: its own pages. The same one resumed (after a jam): its pages so far stay.
    if (pages.dataset.batch !== e.data) { pages.textContent = ""; pages.dataset.batch = e.data; }
  });
  source.addEventListener("pages", function (e) {
    pages.innerHTML = e.data;
    if (window.htmx) { window.htmx.process(pages); }
  });
  source.addEventListener("state", function (e) {
    live.innerHTML = e.data;
    if (window.htmx) { window.htmx.process(live); }
  });
  source.addEventListener("notice", function (e) {
    notice.innerHTML = "";
    var p = document.createElement("p");
    p.className = "message stop";
    p.textContent = e.data;
    notice.appendChild(p);
  });
  source.addEventListener("bye", function () { source.close(); window.location.reload(); });
  source.onerror = function () {
    // A stream the station refuses (signed out) is not retried: show the sign-in page.
    if (source.readyState === EventSource.CLOSED) { window.location.reload(); }
  };
  document.addEventListener("htmx:afterRequest", function (e) {
    var form = e.detail.elt;
    if (form.getAttribute("action") === "/queue" && e.detail.successful &&
        !notice.querySelector(".stop")) { form.reset(); }
  });
})();
