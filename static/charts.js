// Live usage charts on the server page (uPlot, vendored from npm into static/vendor/).
//
// <div id="server-charts" data-server=uuid data-history-url=... data-range="1h"> holds one
// <div data-chart="cpu|memory|disk|network"> per chart. On load (and when a range button
// is pressed) the history comes from GET <history-url>?range=1h|24h|7d|30d:
//   {"range": "1h", "step": 60, "points": [{"t": unix seconds, "cpu_pct": ..., ...}]}
// (a 404 or an error leaves the chart to the live samples); then every
// {"type": "stats.sample", "sample": {...}} that static/paddock.js receives on the page's
// WebSocket (a "paddock:message" event) adds a point, on the 1 h range. Each chart's
// data-points attribute says how many points it holds.
(function () {
  "use strict";

  const RANGES = { "1h": 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400 };
  const KEYS = [
    "cpu_pct",
    "mem_used_mib",
    "mem_total_mib",
    "disk_rd_bps",
    "disk_wr_bps",
    "net_rx_bps",
    "net_tx_bps",
  ];
  const CHART_HEIGHT = 180;

  function bytes(value) {
    if (value === null || value === undefined) {
      return "–";
    }
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    let v = Math.abs(value);
    while (v >= 1024 && i < units.length - 1) {
      v /= 1024;
      i += 1;
    }
    return (value < 0 ? "-" : "") + (i === 0 ? v.toFixed(0) : v.toFixed(1)) + " " + units[i];
  }

  function fixed(digits, suffix) {
    return function (value) {
      return value === null || value === undefined ? "–" : value.toFixed(digits) + suffix;
    };
  }

  // Which series each chart draws: [data key, label, colour, value formatter]
  const CHARTS = {
    cpu: {
      series: [["cpu_pct", "CPU", "#2563eb", fixed(1, " %")]],
      range: [0, 100],
      axis: fixed(0, " %"),
    },
    memory: {
      series: [
        ["mem_used_mib", "Used", "#7c3aed", fixed(0, " MiB")],
        ["mem_total_mib", "Total", "#9ca3af", fixed(0, " MiB")],
      ],
      axis: fixed(0, ""),
    },
    disk: {
      series: [
        ["disk_rd_bps", "Read", "#059669", function (v) { return bytes(v) + "/s"; }],
        ["disk_wr_bps", "Write", "#d97706", function (v) { return bytes(v) + "/s"; }],
      ],
      axis: bytes,
    },
    network: {
      series: [
        ["net_rx_bps", "In", "#0891b2", function (v) { return bytes(v) + "/s"; }],
        ["net_tx_bps", "Out", "#db2777", function (v) { return bytes(v) + "/s"; }],
      ],
      axis: bytes,
    },
  };

  function start(root) {
    if (!window.uPlot) {
      return;
    }
    const status = root.querySelector('[data-role="charts-status"]');
    const server = root.dataset.server;
    let range = root.dataset.range || "1h";
    let data = emptyData();
    let historyLoaded = false;
    let historyNote = "";
    let live = 0;
    const plots = {};

    function emptyData() {
      const d = { t: [] };
      KEYS.forEach(function (key) {
        d[key] = [];
      });
      return d;
    }

    function say(text) {
      if (status) {
        status.textContent = text;
      }
    }

    function width(el) {
      return Math.max(240, el.clientWidth || el.parentElement.clientWidth || 480);
    }

    Object.keys(CHARTS).forEach(function (name) {
      const el = root.querySelector('[data-chart="' + name + '"]');
      if (!el) {
        return;
      }
      const spec = CHARTS[name];
      const options = {
        width: width(el),
        height: CHART_HEIGHT,
        cursor: { drag: { x: false, y: false } },
        scales: { x: { time: true }, y: spec.range ? { range: spec.range } : { auto: true } },
        axes: [
          {},
          {
            size: 70,
            values: function (u, ticks) {
              return ticks.map(spec.axis);
            },
          },
        ],
        series: [{}].concat(
          spec.series.map(function (s) {
            return { label: s[1], stroke: s[2], width: 1.5, value: function (u, v) { return s[3](v); } };
          })
        ),
      };
      plots[name] = { el: el, spec: spec, plot: new window.uPlot(options, [[]].concat(spec.series.map(function () { return []; })), el) };
    });

    function redraw() {
      Object.keys(plots).forEach(function (name) {
        const entry = plots[name];
        const columns = [data.t].concat(
          entry.spec.series.map(function (s) {
            return data[s[0]];
          })
        );
        entry.plot.setData(columns);
        entry.el.dataset.points = String(data.t.length);
      });
    }

    function push(point) {
      const t = Number(point.t);
      if (!isFinite(t)) {
        return;
      }
      // samples arrive in order; one out of order (a reconnect) goes where it belongs
      let i = data.t.length;
      while (i > 0 && data.t[i - 1] > t) {
        i -= 1;
      }
      if (i > 0 && data.t[i - 1] === t) {
        return;
      }
      data.t.splice(i, 0, t);
      KEYS.forEach(function (key) {
        const v = point[key];
        data[key].splice(i, 0, v === null || v === undefined ? null : Number(v));
      });
    }

    function trim() {
      const oldest = Date.now() / 1000 - RANGES[range];
      let drop = 0;
      while (drop < data.t.length && data.t[drop] < oldest) {
        drop += 1;
      }
      if (drop > 0) {
        data.t.splice(0, drop);
        KEYS.forEach(function (key) {
          data[key].splice(0, drop);
        });
      }
    }

    function loadHistory(wanted) {
      say("Loading " + wanted + "…");
      const url = root.dataset.historyUrl + "?range=" + encodeURIComponent(wanted);
      return fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) {
          if (wanted !== range) {
            return;
          }
          if (!response.ok) {
            historyLoaded = false;
            historyNote = response.status === 404 ? "no history yet" : "history unavailable (" + response.status + ")";
            say(historyNote.charAt(0).toUpperCase() + historyNote.slice(1) + ": live samples only");
            return;
          }
          return response.json().then(function (body) {
            if (wanted !== range) {
              return;
            }
            const live1h = data;
            data = emptyData();
            (body.points || []).forEach(push);
            if (wanted === "1h") {
              // keep what arrived live while the history was on its way
              for (let i = 0; i < live1h.t.length; i += 1) {
                const p = { t: live1h.t[i] };
                KEYS.forEach(function (key) {
                  p[key] = live1h[key][i];
                });
                push(p);
              }
            }
            historyLoaded = true;
            trim();
            redraw();
            say(wanted === "1h" ? "Last hour, live" : "Last " + wanted + ", " + (body.step || "?") + " s steps");
          });
        })
        .catch(function () {
          if (wanted === range) {
            historyNote = "history unavailable";
            say("History unavailable: live samples only");
          }
        });
    }

    document.addEventListener("paddock:message", function (event) {
      const message = event.detail;
      if (!message || message.type !== "stats.sample" || !message.sample) {
        return;
      }
      if (message.sample.server !== server || range !== "1h") {
        return;
      }
      push(message.sample);
      trim();
      redraw();
      live += 1;
      if (!historyLoaded) {
        say("Live: " + live + " sample" + (live === 1 ? "" : "s") + (historyNote ? " (" + historyNote + ")" : ""));
      }
    });

    root.querySelectorAll("button[data-range]").forEach(function (button) {
      button.addEventListener("click", function () {
        const wanted = button.dataset.range;
        if (!RANGES[wanted] || wanted === range) {
          return;
        }
        root.querySelectorAll("button[data-range]").forEach(function (other) {
          const on = other === button;
          other.classList.toggle("active", on);
          other.setAttribute("aria-pressed", on ? "true" : "false");
        });
        range = wanted;
        root.dataset.range = wanted;
        data = emptyData();
        historyLoaded = false;
        redraw();
        loadHistory(wanted);
      });
    });

    if ("ResizeObserver" in window) {
      new ResizeObserver(function () {
        Object.keys(plots).forEach(function (name) {
          const entry = plots[name];
          entry.plot.setSize({ width: width(entry.el), height: CHART_HEIGHT });
        });
      }).observe(root);
    }

    loadHistory(range);
  }

  function init() {
    const root = document.getElementById("server-charts");
    if (root) {
      start(root);
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
