// The staff fleet page: one row per host (<tr data-host-id>), updated by every
// {"type": "stats.host", "host": {...}} sample that static/paddock.js receives on the
// fleet socket (a "paddock:message" event). A host above data-overload-pct of any
// capacity gets data-overloaded="true" (and stands out).
(function () {
  "use strict";

  const ZERO_UUID = "00000000-0000-0000-0000-000000000000";

  function pct(used, total) {
    return total > 0 ? (100 * used) / total : 0;
  }

  function mib(value) {
    return value >= 1024 ? (value / 1024).toFixed(1) + " GiB" : Math.round(value) + " MiB";
  }

  function setMeter(cell, value, text, of, limit) {
    if (!cell) {
      return;
    }
    const shown = Math.max(0, Math.min(100, value));
    const label = cell.querySelector('[data-role="text"]');
    if (label) {
      label.textContent = text + " ";
      const rest = document.createElement("span");
      rest.className = "text-body-secondary";
      rest.textContent = of ? of + " · " + value.toFixed(0) + "%" : "of CPU time";
      label.appendChild(rest);
    }
    const progress = cell.querySelector(".progress");
    if (progress) {
      progress.setAttribute("aria-valuenow", value.toFixed(0));
    }
    const bar = cell.querySelector(".progress-bar");
    if (bar) {
      bar.style.width = shown + "%";
      bar.classList.remove("bg-success", "bg-warning", "bg-danger");
      bar.classList.add(value > limit ? "bg-danger" : value >= 70 ? "bg-warning" : "bg-success");
    }
  }

  function apply(root, host) {
    const row = root.querySelector('tr[data-host-id="' + host.id + '"]');
    if (!row) {
      return;
    }
    const limit = Number(root.dataset.overloadPct) || 85;
    const cpu = Number(host.cpu_pct) || 0;
    const mem = pct(host.mem_used_mib, host.mem_capacity_mib);
    const disk = pct(host.disk_used_gib, host.disk_capacity_gib);
    setMeter(row.querySelector('[data-meter="cpu"]'), cpu, cpu.toFixed(1) + " %", "", limit);
    setMeter(row.querySelector('[data-meter="memory"]'), mem, mib(host.mem_used_mib), "of " + mib(host.mem_capacity_mib), limit);
    setMeter(row.querySelector('[data-meter="disk"]'), disk, host.disk_used_gib + " GiB", "of " + host.disk_capacity_gib + " GiB", limit);
    const overloaded = cpu > limit || mem > limit || disk > limit;
    row.dataset.overloaded = overloaded ? "true" : "false";
    row.dataset.cpu = cpu.toFixed(1);
    const vcpus = row.querySelector('[data-role="vcpus"]');
    if (vcpus) {
      vcpus.textContent = host.vcpus_used + " of " + host.vcpus_capacity;
    }
    const servers = row.querySelector('[data-role="servers"]');
    if (servers) {
      servers.textContent = String(host.servers);
    }
    const top = row.querySelector('[data-role="top"]');
    if (top) {
      top.replaceChildren();
      (host.top || []).forEach(function (entry) {
        const line = document.createElement("div");
        const link = document.createElement("a");
        link.href = root.dataset.serverUrl.replace(ZERO_UUID, entry.server);
        link.textContent = entry.hostname;
        line.appendChild(link);
        line.appendChild(document.createTextNode(" " + Number(entry.cpu_pct).toFixed(1) + " %"));
        top.appendChild(line);
      });
      if (!top.childElementCount) {
        top.textContent = "no servers running";
      }
    }
    const time = row.querySelector('[data-role="time"]');
    if (time) {
      time.textContent = new Date(host.t * 1000).toLocaleTimeString();
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    const root = document.getElementById("fleet");
    if (!root) {
      return;
    }
    document.addEventListener("paddock:message", function (event) {
      const message = event.detail;
      if (message && message.type === "stats.host" && message.host) {
        apply(root, message.host);
      }
    });
  });
})();
