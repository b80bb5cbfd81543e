// jobtrail console: live updates without a reload.
//
// A page part marked with data-live (the URL that renders it again) and data-events (an
// /api/events stream, authenticated by the session's cookie) is fetched again shortly
// after any of the event types in data-types arrives. The stream resumes by itself after
// a drop (the browser sends Last-Event-ID); nothing here parses or inserts event text.
"use strict";

(function () {
  const part = document.querySelector("[data-live][data-events]");
  if (!part || !window.EventSource) {
    return;
  }
  const state = document.getElementById("live-state");
  const source = new EventSource(part.dataset.events);
  let timer = null;

  async function refresh() {
    timer = null;
    const current = document.querySelector("[data-live][data-events]");
    const response = await fetch(current.dataset.live, { credentials: "same-origin" });
    if (!response.ok) {
      return;
    }
    const text = await response.text();
    if (current.tagName === "TBODY") {
      // the server rendered these rows, escaped, from the same template as the page
      current.innerHTML = text;
    } else {
      const fresh = new DOMParser().parseFromString(text, "text/html").querySelector("main");
      if (fresh) {
        document.querySelector("main").replaceWith(fresh);
      }
    }
    document.body.dataset.refreshed = String(Number(document.body.dataset.refreshed || 0) + 1);
  }

  function soon() {
    if (timer === null) {
      timer = setTimeout(refresh, 200);
    }
  }

  for (const type of (part.dataset.types || "").split(" ")) {
    if (type) {
      source.addEventListener(type, soon);
    }
  }
  source.onopen = function () {
    document.body.dataset.live = "open";
    if (state) {
      state.textContent = "Live: new reports show up here as they arrive.";
    }
  };
  source.onerror = function () {
    document.body.dataset.live = "reconnecting";
    if (state) {
      state.textContent = "Live updates paused: reconnecting…";
    }
  };
})();
