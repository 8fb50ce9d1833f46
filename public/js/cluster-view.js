// The operators' view of GET /api/cluster: nodes and their services, which node owns which
// partition, the live actors per node, and the consumer lag per partition when the server
// reports it (a `lag` array of {partition, lag}; older servers leave it out).

import { el, fmt, setText } from "./dom.js";

const NODE_COLORS = 6;

export class ClusterView {
  /**
   * @param {object} parts
   * @param {HTMLElement} parts.root the panel body
   * @param {HTMLElement} parts.summary one line in the header
   */
  constructor({ root, summary }) {
    this.summary = summary;
    this.meta = el("p", { class: "muted meta" }, "Loading…");
    this.nodes = el("tbody");
    this.partitions = el("ol", { class: "partitions", "aria-label": "Partitions and their owners" });
    root.replaceChildren(
      this.meta,
      el(
        "div",
        { class: "table-wrap" },
        el(
          "table",
          { class: "nodes" },
          el("caption", { class: "visually-hidden" }, "Nodes of the cluster"),
          el(
            "thead",
            {},
            el(
              "tr",
              {},
              ["Node", "State", "Partitions", "Live actors"].map((h, i) =>
                el("th", { scope: "col", class: i >= 2 ? "num" : "" }, h),
              ),
            ),
          ),
          this.nodes,
        ),
      ),
      el("h3", {}, "Partitions"),
      this.partitions,
      (this.webhooks = el("p", { class: "muted webhooks", "aria-live": "polite" }, "Webhooks: …")),
    );
    this.last = null;
  }

  update(cluster, now = Date.now() / 1000) {
    this.last = cluster;
    const actorNodes = cluster.actors.map(a => a.nodeID).sort();
    const colorOf = nodeID => {
      const i = actorNodes.indexOf(nodeID);
      return i < 0 ? "none" : String(i % NODE_COLORS);
    };
    const byNode = new Map(cluster.actors.map(a => [a.nodeID, a]));

    this.nodes.replaceChildren(
      ...cluster.nodes.map(n => {
        const a = byNode.get(n.nodeID);
        return el(
          "tr",
          {},
          el(
            "th",
            { scope: "row" },
            el("span", { class: "swatch", dataset: { node: colorOf(n.nodeID) }, "aria-hidden": "true" }),
            n.nodeID,
            n.local ? el("span", { class: "muted" }, " (this gateway)") : null,
            el("span", { class: "services muted" }, n.services.join(", ") || "no services"),
          ),
          el("td", { class: n.available ? "ok" : "bad" }, n.available ? "up" : "down"),
          el("td", { class: "num", title: a ? a.partitions.join(", ") : "" }, a ? ranges(a.partitions) : "–"),
          el("td", { class: "num" }, a ? fmt.whole(a.actors) : "–"),
        );
      }),
    );

    const count = cluster.partitionCount ?? cluster.partitions.length;
    const owner = new Map(cluster.partitions.map(p => [p.partition, p.nodeID]));
    const lag = Array.isArray(cluster.lag) ? new Map(cluster.lag.map(l => [l.partition, l.lag])) : null;
    const items = [];
    for (let p = 0; p < count; p++) {
      const nodeID = owner.get(p) ?? null;
      const lagText = lag ? `lag ${fmt.whole(lag.get(p))}` : "lag n/a";
      items.push(
        el(
          "li",
          {
            class: `partition${nodeID ? "" : " orphan"}`,
            dataset: { node: nodeID ? colorOf(nodeID) : "none", partition: p },
          },
          el("span", { class: "p" }, `P${p}`),
          el("span", { class: "owner", title: nodeID ?? "" }, nodeID ?? "unowned"),
          el("span", { class: lag && lag.get(p) > 0 ? "lag behind" : "lag" }, lagText),
        ),
      );
    }
    this.partitions.replaceChildren(...items);

    const owned = owner.size;
    const actors = cluster.actors.reduce((n, a) => n + a.actors, 0);
    const totalLag = lag ? [...lag.values()].reduce((n, v) => n + v, 0) : null;
    setText(
      this.summary,
      `${cluster.nodes.length} node${cluster.nodes.length === 1 ? "" : "s"} · ${owned}/${count} partitions owned · ${fmt.whole(actors)} live actors` +
        (totalLag === null ? "" : ` · lag ${fmt.whole(totalLag)}`),
    );
    setText(
      this.meta,
      `Updated ${fmt.clock(now)} from gateway ${cluster.gateway}.` +
        (lag ? "" : " Consumer lag per partition is not reported by this server."),
    );
    this.meta.classList.remove("bad");
  }

  /**
   * One line on the webhook subscribers (GET /api/notifications): each one's state and lag, so an
   * operator sees at a glance that signals reach the bots behind them.
   */
  updateNotifications(subscribers) {
    this.notificationsSeen = subscribers.length;
    if (subscribers.length === 0) return setText(this.webhooks, "Webhooks: none configured.");
    const parts = subscribers.map(s => {
      const state = s.disabled
        ? "disabled (410)"
        : s.attempts > 0
          ? `retrying (${s.attempts}): ${s.lastError ?? "error"}`
          : s.lag > 0
            ? `${fmt.whole(s.lag)} waiting`
            : "up to date";
      return `${s.name}: ${fmt.whole(s.delivered)} delivered, ${state}${s.deadLetters > 0 ? `, ${s.deadLetters} dead` : ""}`;
    });
    setText(this.webhooks, `Webhooks: ${parts.join(" · ")}.`);
    this.webhooks.classList.toggle(
      "bad",
      subscribers.some(s => s.disabled || s.attempts > 0 || s.deadLetters > 0),
    );
  }

  notificationsUnavailable(reason) {
    setText(this.webhooks, `Webhooks: ${reason}`);
    this.webhooks.classList.add("bad");
  }

  /** Keeps the last figures on screen and says why they are not being refreshed. */
  stale(reason) {
    setText(this.meta, reason);
    this.meta.classList.add("bad");
  }

  describe() {
    return {
      nodes: this.last?.nodes.length ?? 0,
      partitions: this.partitions.children.length,
      owned: this.last?.partitions.length ?? 0,
      webhooks: this.webhooks.textContent,
    };
  }
}

/** [0,1,2,3,7,9,10] -> "0–3, 7, 9–10" */
function ranges(list) {
  const sorted = [...list].sort((a, b) => a - b);
  const parts = [];
  for (let i = 0; i < sorted.length; i++) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j] + 1) j++;
    parts.push(i === j ? `${sorted[i]}` : `${sorted[i]}–${sorted[j]}`);
    i = j;
  }
  return parts.join(", ") || "none";
}
