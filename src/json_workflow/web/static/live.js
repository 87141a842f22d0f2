// Refreshes the overview's live part every few seconds; the page works without it (reload by hand).
(function () {
  "use strict";
  var box = document.getElementById("live");
  if (!box || !window.fetch) return;
  var url = box.getAttribute("data-refresh");
  var every = 1000 * (parseFloat(box.getAttribute("data-seconds")) || 2);
  function refresh() {
    if (document.hidden) {  // a tab in the background asks for nothing
      setTimeout(refresh, every);
      return;
    }
    fetch(url, { headers: { "Accept": "text/html" }, credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.body;
        if (fresh) box.innerHTML = fresh.innerHTML;
        box.removeAttribute("data-stale");
      })
      .catch(function () { box.setAttribute("data-stale", "true"); })
      .then(function () { setTimeout(refresh, every); });
  }
  setTimeout(refresh, every);
})();
