// Paddock's own browser code: live server pages over a WebSocket, small helpers.
//
// The server page holds <div id="server-live" data-ws-path=... data-live-url=...>.
// A socket to data-ws-path receives {"type": "job.update", "job": {...}} and
// {"type": "server.update", "server": {...}}. Progress is applied in place; when a job
// ends or the state changes, the live part is fetched again with htmx, so the buttons
// and the job history always come from the server, never from guesses in the browser.
(function () {
  "use strict";

  const FINISHED = new Set(["succeeded", "failed", "cancelled"]);
  const MAX_BACKOFF_MS = 30000;

  function liveRoot() {
    return document.getElementById("server-live");
  }

  function debounce(fn, ms) {
    let timer = null;
    return function () {
      clearTimeout(timer);
      timer = setTimeout(fn, ms);
    };
  }

  function refresh() {
    const root = liveRoot();
    if (!root || !window.htmx) {
      return;
    }
    window.htmx.ajax("GET", root.dataset.liveUrl, { target: "#server-live", swap: "outerHTML" });
  }
  const refreshSoon = debounce(refresh, 150);

  function capitalize(text) {
    return text ? text.charAt(0).toUpperCase() + text.slice(1) : text;
  }

  function applyServer(server) {
    const root = liveRoot();
    if (!root || root.dataset.server !== server.uuid) {
      return;
    }
    document.querySelectorAll('[data-role="server-state"]').forEach(function (badge) {
      badge.dataset.state = server.state;
      const label = badge.querySelector(".state-label");
      if (label) {
        label.textContent = capitalize(server.state);
      }
    });
    if (root.dataset.state !== server.state) {
      root.dataset.state = server.state;
      refreshSoon();
    }
  }

  function applyJob(job) {
    const card = document.querySelector('[data-role="job"][data-job-id="' + job.id + '"]');
    if (!card) {
      // A job this page does not show yet (started elsewhere): fetch the live part.
      if (!FINISHED.has(job.status) || liveRoot()?.dataset.activeJob) {
        refreshSoon();
      }
      return;
    }
    const progress = card.querySelector('[data-role="job-progress"]');
    if (progress) {
      progress.setAttribute("aria-valuenow", String(job.progress));
      const bar = progress.querySelector(".progress-bar");
      if (bar) {
        bar.style.width = job.progress + "%";
        bar.textContent = job.progress + "%";
        if (FINISHED.has(job.status)) {
          bar.classList.remove("progress-bar-animated");
        }
      }
    }
    const message = card.querySelector('[data-role="job-message"]');
    if (message) {
      message.textContent = job.error || job.message;
    }
    card.dataset.status = job.status;
    const badge = card.querySelector('[data-role="job-status"] .job-badge');
    if (badge) {
      badge.dataset.status = job.status;
      badge.lastChild.textContent = " " + capitalize(job.status);
    }
    if (FINISHED.has(job.status)) {
      refreshSoon();
    }
  }

  function setIndicator(connected) {
    const indicator = document.getElementById("live-indicator");
    if (!indicator) {
      return;
    }
    indicator.dataset.connected = connected ? "true" : "false";
    const text = indicator.querySelector(".live-text");
    if (text) {
      text.textContent = connected ? "Live" : "Reconnecting…";
    }
  }

  function connect() {
    const root = liveRoot();
    if (!root || !("WebSocket" in window)) {
      return;
    }
    const scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    const url = scheme + window.location.host + root.dataset.wsPath;
    let backoff = 1000;
    let opened = false;

    function open() {
      const socket = new WebSocket(url);
      socket.addEventListener("open", function () {
        setIndicator(true);
        // Anything that happened before the socket was up (or while it was down)
        // is picked up by fetching the live part once.
        const current = liveRoot();
        if (opened || (current && current.dataset.activeJob)) {
          refresh();
        }
        opened = true;
        backoff = 1000;
      });
      socket.addEventListener("message", function (event) {
        let data;
        try {
          data = JSON.parse(event.data);
        } catch (err) {
          return;
        }
        if (data.type === "job.update" && data.job) {
          applyJob(data.job);
        } else if (data.type === "server.update" && data.server) {
          applyServer(data.server);
        }
      });
      socket.addEventListener("close", function () {
        setIndicator(false);
        setTimeout(open, backoff);
        backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
      });
    }
    open();
  }

  // Copy buttons: <button data-copy="#selector">.
  document.addEventListener("click", function (event) {
    const button = event.target.closest("[data-copy]");
    if (!button) {
      return;
    }
    const source = document.querySelector(button.dataset.copy);
    if (!source) {
      return;
    }
    source.select();
    const done = function () {
      button.innerHTML = '<i class="bi bi-clipboard-check"></i> Copied';
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(source.value).then(done);
    } else {
      document.execCommand("copy");
      done();
    }
  });

  document.addEventListener("DOMContentLoaded", connect);
})();

// Keep the serial console scrolled to its end after each refresh, unless the reader
// scrolled up to read something.
document.body.addEventListener("htmx:beforeSwap", (event) => {
  const box = event.detail.target.querySelector && event.detail.target.querySelector(".console-text");
  if (box) event.detail.target.dataset.stick = String(box.scrollHeight - box.scrollTop - box.clientHeight < 24);
});
document.body.addEventListener("htmx:afterSwap", (event) => {
  const box = event.detail.target.querySelector && event.detail.target.querySelector(".console-text");
  if (box && event.detail.target.dataset.stick !== "false") box.scrollTop = box.scrollHeight;
});
