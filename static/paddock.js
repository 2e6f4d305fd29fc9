// Paddock's own browser code: live server pages over a WebSocket, small helpers.
// Every message is also dispatched as a "paddock:message" event on document (the charts
// in static/charts.js and the fleet page in static/fleet.js listen to it).
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

  // The newest update of each job seen on the socket: a live part fetched while updates
  // kept arriving may have been rendered before the last of them, and must not show the
  // job going backwards (see catchUp).
  const latestJobs = new Map();

  function applyJob(job) {
    latestJobs.set(job.id, job);
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

  // The serial console (#console-tail on the server page) comes over the same socket:
  // asked for once the socket is open, the whole tail first, then what was appended.
  // An append names the read it follows; one that does not follow what is shown asks for
  // the whole tail again (text is only ever set as text, never as markup).
  const CONSOLE_MAX_CHARS = 64 * 1024;

  function consoleRoot() {
    return document.getElementById("console-tail");
  }

  function askForConsole(socket) {
    if (consoleRoot() && socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify({ type: "console" }));
    }
  }

  function applyConsole(data, socket) {
    const root = consoleRoot();
    if (!root || root.dataset.server !== data.server) {
      return;
    }
    const box = root.querySelector(".console-text");
    const shown = root.dataset.at || "";
    let text;
    if (data.reset) {
      text = data.text;
    } else if (data.since === shown) {
      text = box.textContent + data.text;
    } else {
      if (data.at !== shown) {
        askForConsole(socket);
      }
      return;
    }
    const stick = box.scrollHeight - box.scrollTop - box.clientHeight < 24;
    if (text.length > CONSOLE_MAX_CHARS) {
      text = text.slice(text.length - CONSOLE_MAX_CHARS);
    }
    box.textContent = text || (data.at ? "(the console has printed nothing yet)" : "Reading the console…");
    root.dataset.at = data.at;
    const error = root.querySelector('[data-role="console-error"]');
    if (error) {
      error.hidden = !data.error;
      error.querySelector(".console-error-text").textContent = data.error || "";
    }
    if (stick) {
      box.scrollTop = box.scrollHeight;
    }
  }

  // The live indicator says what the socket does: "Live", "Reconnecting…", and after
  // a few failed attempts in a row that it cannot connect (and when it tries again);
  // a socket closed because access was withdrawn (4403) does not come back.
  const FAILED_AFTER = 3;
  const CLOSE_REVOKED = 4403;

  function setIndicator(connected, text, failed) {
    const indicator = document.getElementById("live-indicator");
    if (!indicator) {
      return;
    }
    indicator.dataset.connected = connected ? "true" : "false";
    indicator.dataset.failed = failed ? "true" : "false";
    const label = indicator.querySelector(".live-text");
    if (label) {
      label.textContent = text || (connected ? "Live" : "Reconnecting…");
    }
  }

  function connect() {
    // The server page's live part or the staff fleet page names its socket.
    const root = document.querySelector("[data-ws-path]");
    if (!root || !("WebSocket" in window)) {
      return;
    }
    const scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    const url = scheme + window.location.host + root.dataset.wsPath;
    let backoff = 1000;
    let opened = false;
    let failures = 0;

    function open() {
      const socket = new WebSocket(url);
      socket.addEventListener("open", function () {
        setIndicator(true);
        // Anything that happened before the socket was up (or while it was down)
        // is picked up by fetching the live part once.
        const current = liveRoot();
        if (current && (opened || current.dataset.activeJob)) {
          refresh();
        }
        askForConsole(socket);
        opened = true;
        backoff = 1000;
        failures = 0;
        document.dispatchEvent(new CustomEvent("paddock:socket", { detail: { open: true } }));
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
        } else if (data.type === "console.tail") {
          applyConsole(data, socket);
        }
        // stats.sample, stats.host and the rest go to whoever listens (charts.js, fleet.js)
        document.dispatchEvent(new CustomEvent("paddock:message", { detail: data }));
      });
      socket.addEventListener("close", function (event) {
        document.dispatchEvent(new CustomEvent("paddock:socket", { detail: { open: false } }));
        if (event.code === CLOSE_REVOKED) {
          setIndicator(false, "Access withdrawn: live updates stopped", true);
          return;
        }
        failures += 1;
        const seconds = Math.round(backoff / 1000);
        if (failures >= FAILED_AFTER) {
          setIndicator(false, "Cannot connect for live updates: retrying in " + seconds + " s", true);
        } else {
          setIndicator(false, "Reconnecting…");
        }
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

  // Progress bars carry their width as data-width (a percentage): the Content Security
  // Policy allows no style="" attribute, so it is set here, for the page and for every
  // part htmx swaps in.
  function applyWidths(root) {
    root.querySelectorAll("[data-width]").forEach(function (bar) {
      bar.style.width = Math.max(0, Math.min(100, Number(bar.dataset.width) || 0)) + "%";
    });
  }
  // A swapped-in live part older than the socket's last word on its job: apply that word.
  function catchUp(root) {
    root.querySelectorAll('[data-role="job"][data-job-id]').forEach(function (card) {
      const latest = latestJobs.get(Number(card.dataset.jobId));
      const progress = card.querySelector('[data-role="job-progress"]');
      const shown = progress ? Number(progress.getAttribute("aria-valuenow")) : 0;
      if (latest && (latest.progress > shown || (FINISHED.has(latest.status) && latest.status !== card.dataset.status))) {
        applyJob(latest);
      }
    });
  }

  // (on afterSwap, in the task of the swap itself: the old numbers never show)
  // (widths too: htmx's own load event for swapped-in content comes a settle delay later,
  // and a bar without its width would flash empty meanwhile)
  document.addEventListener("htmx:afterSwap", function () {
    applyWidths(document);
    catchUp(document);
  });
  if (window.htmx) {
    window.htmx.onLoad(applyWidths);
  } else {
    document.addEventListener("DOMContentLoaded", function () {
      applyWidths(document);
    });
  }

  // Forms that ask first: <form data-confirm="Question?"> (no inline onsubmit handler).
  document.addEventListener("submit", function (event) {
    const question = event.target.dataset && event.target.dataset.confirm;
    if (question && !window.confirm(question)) {
      event.preventDefault();
    }
  });

  document.addEventListener("DOMContentLoaded", connect);
})();
