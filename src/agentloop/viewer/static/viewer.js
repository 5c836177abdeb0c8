// agentloop view: the only script, served from the package (the CSP allows no other).
// Live mode: a run page whose body has data-live-state polls that URL and reloads the page
// when the trace has grown, until the run has a terminal event.
"use strict";
(function () {
  const body = document.body;
  const stateUrl = body.dataset.liveState;
  if (!stateUrl) {
    return;
  }
  let lines = Number(body.dataset.liveLines || "0");
  window.scrollTo(0, document.body.scrollHeight);
  async function poll() {
    try {
      const response = await fetch(stateUrl, { cache: "no-store", credentials: "same-origin" });
      if (response.ok) {
        const state = await response.json();
        if (state.lines !== lines || state.finished) {
          lines = state.lines;
          window.location.replace(window.location.pathname + "?live=1");
          return;
        }
      }
    } catch (error) {
      // the viewer was stopped; try again later
    }
    window.setTimeout(poll, 1000);
  }
  window.setTimeout(poll, 1000);
})();
