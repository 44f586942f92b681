// Cutover UI: the stale banner and resuming the change stream. No framework, no build step.
(function () {
  "use strict";
  var lastEventId = null;
  var broken = false;

  function banner(show) {
    var stale = document.getElementById("stale");
    if (stale) stale.hidden = !show;
  }

  // Every event moves the stream's URL on, so a reconnect made by the SSE extension resumes
  // after it (the browser's own reconnects send Last-Event-ID by themselves).
  document.addEventListener("htmx:sseMessage", function (e) {
    var id = e.detail && e.detail.lastEventId;
    if (!id || id === lastEventId) return;
    lastEventId = id;
    var source = document.querySelector("[sse-connect]");
    if (source) source.setAttribute("sse-connect", "/ui/events?last_event_id=" + encodeURIComponent(id));
  });

  document.addEventListener("htmx:sseError", function () {
    broken = true;
    banner(true);
  });

  document.addEventListener("htmx:sseOpen", function () {
    banner(false);
    if (broken) {
      broken = false;
      // Back after an outage: whatever the replay does not cover, a refetch does.
      document.querySelectorAll("[data-live]").forEach(function (el) {
        htmx.trigger(el, "refresh");
      });
    }
  });
})();
