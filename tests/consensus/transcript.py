"""Plain-text scenario transcripts for the Raft state machine (in the manner of etcd-io/raft's testdata).

A transcript is a sequence of blocks::

    # comments and blank lines are kept as they are
    command arg arg key=value
    ----
    expected output (no blank lines)

``run_file`` executes every command against a fresh ``Env`` and returns the file text with the actual
outputs; the test compares that with the file. ``CEMP_REWRITE=1`` writes it back instead.

Commands (node ids are "1", "2", ...; ``ids`` default to every node):

- ``add-nodes N [voters=1,2,3] [learners=4] [prevote=true] [checkquorum=true] [election=10]
  [heartbeat=1] [max-entries=64]``: create N nodes. The first call fixes the genesis membership (default:
  the new nodes as voters); later calls create nodes that join from that genesis membership.
- ``campaign ID``, ``propose ID DATA``, ``propose-conf ID add-voter|add-learner|promote|remove NODE``,
  ``transfer-leadership FROM TO``: call the matching ``Raft`` method; errors are printed.
- ``tick ID [N]``; ``tick-heartbeat ID``; ``tick-election ID``: a leader ticks ``election`` times (one
  check-quorum round); any other node ticks until its election timer fires (at most 2*election - 1 ticks,
  which fires it exactly once).
- ``process-ready [ids]``: take each node's Ready, print it, persist it, queue its messages (messages
  crossing a partition or to a crashed node are printed as dropped), apply, advance.
- ``deliver-msgs [ids] [from=ID]``: step queued messages into each node and print them, with the
  receiver's role/term/leader after the step when that changed.
- ``drop-msgs [ids] [from=ID]``: discard queued messages.
- ``stabilize [ids] [quiet]``: repeat process-ready and deliver-msgs until nothing is left to do.
- ``partition A B / C``: messages between groups are dropped (at send and at delivery); unlisted nodes
  are isolated. ``heal`` undoes it.
- ``crash ID`` / ``restart ID``: drop the Raft object (its unpersisted state is lost; messages already
  queued to it stay in flight and are dropped only if delivered while it is down) / rebuild it from what
  was persisted.
- ``compact ID INDEX``: compact the log up to INDEX (<= applied) with the app's snapshot bytes.
- ``status ID``, ``log ID``: print state.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from pathlib import Path

from consensus.messages import (
    ConfigChange,
    ConfigChangeOp,
    Index,
    Membership,
    Message,
    NodeId,
    genesis_snapshot,
)
from consensus.quorum import InvalidConfigChange
from consensus.raft import Raft, RaftConfig, RaftError, Role
from tests.consensus.harness import (
    App,
    MemoryStorage,
    fmt_entry,
    fmt_membership,
    fmt_msg,
    fmt_ready,
    fmt_snapshot,
    zero_hard_state,
)

OPS = {
    "add-voter": ConfigChangeOp.ADD_VOTER,
    "add-learner": ConfigChangeOp.ADD_LEARNER,
    "promote": ConfigChangeOp.PROMOTE_LEARNER,
    "remove": ConfigChangeOp.REMOVE_NODE,
}


@dataclass
class Node:
    config: RaftConfig
    storage: MemoryStorage
    app: App
    raft: Raft | None
    restarts: int = 0


@dataclass
class Env:
    nodes: dict[str, Node] = field(default_factory=dict)
    queue: dict[str, list[Message]] = field(default_factory=dict)
    genesis: Membership | None = None
    groups: dict[str, int] | None = None

    # ---- helpers -------------------------------------------------------------------------------------------

    def raft(self, node: str) -> Raft:
        r = self.nodes[node].raft
        if r is None:
            raise ValueError(f"node {node} is down")
        return r

    def ids(self, args: list[str]) -> list[str]:
        return args if args else list(self.nodes)

    def cut(self, a: str, b: str) -> bool:
        return self.groups is not None and self.groups.get(a, -1) != self.groups.get(b, -2)

    def new_raft(self, n: Node) -> Raft:
        rng = random.Random(int(n.config.node_id) * 1000 + n.restarts)
        return Raft(
            n.config,
            rng,
            snapshot=n.storage.snapshot,
            hard_state=n.storage.hard_state,
            entries=list(n.storage.entries),
            applied=Index(n.app.applied),
        )

    def process_ready(self, node: str, indent: str = "") -> list[str]:
        n = self.nodes[node]
        r = n.raft
        if r is None:
            return []
        rd = r.ready()
        if rd is None:
            return []
        out = []  # the Ready up to its messages; messages are printed below with their fate
        for line in fmt_ready(rd):
            if line == "messages:":
                break
            out.append(indent + line)
        n.storage.persist(rd)
        if rd.messages:
            out.append(indent + "messages:")
        for m in rd.messages:
            note = ""
            if self.cut(m.from_, m.to):
                note = " (dropped: partition)"
            elif m.to in self.nodes and self.nodes[m.to].raft is None:
                note = " (dropped: down)"
            else:
                self.queue.setdefault(m.to, []).append(m)
            out.append(f"{indent}  {fmt_msg(m)}{note}")
        if rd.snapshot is not None:
            n.app.restore(rd.snapshot.data)
        for e in rd.committed_entries:
            n.app.apply(e)
        r.advance(rd)
        return out

    def deliver(self, node: str, sender: str | None, indent: str = "") -> list[str]:
        pending = self.queue.get(node, [])
        keep = [m for m in pending if sender is not None and m.from_ != sender]
        take = [m for m in pending if sender is None or m.from_ == sender]
        self.queue[node] = keep
        out = []
        for m in take:
            line = indent + fmt_msg(m)
            r = self.nodes[node].raft
            if r is None:
                out.append(line + " (dropped: down)")
                continue
            if self.cut(m.from_, m.to):
                out.append(line + " (dropped: partition)")
                continue
            out.append(line)
            before = (r.role, r.term, r.leader)
            r.step(m)
            after = (r.role, r.term, r.leader)
            if after != before:
                out.append(f"{indent}  => {node} is {r.role.value} term={r.term} leader={r.leader or '-'}")
        return out

    # ---- commands ------------------------------------------------------------------------------------------

    def run(self, line: str) -> list[str]:
        words = line.split()
        cmd, args = words[0], words[1:]
        kw = dict(a.split("=", 1) for a in args if "=" in a)
        pos = [a for a in args if "=" not in a]
        handler = getattr(self, "cmd_" + cmd.replace("-", "_"), None)
        if handler is None:
            raise ValueError(f"unknown command {cmd!r}")
        try:
            out: list[str] = handler(pos, kw)
        except (RaftError, InvalidConfigChange) as e:
            out = [f"error: {type(e).__name__}: {e}"]
        return out or ["ok"]

    def cmd_add_nodes(self, pos: list[str], kw: dict[str, str]) -> list[str]:
        count = int(pos[0])
        start = len(self.nodes) + 1
        new = [str(i) for i in range(start, start + count)]
        if self.genesis is None:
            voters = kw["voters"].split(",") if "voters" in kw else new
            learners = kw["learners"].split(",") if kw.get("learners") else []
            self.genesis = Membership.of([NodeId(v) for v in voters], [NodeId(x) for x in learners])
        for node in new:
            cfg = RaftConfig(
                NodeId(node),
                election_ticks=int(kw.get("election", "10")),
                heartbeat_ticks=int(kw.get("heartbeat", "1")),
                pre_vote=kw.get("prevote", "true") == "true",
                check_quorum=kw.get("checkquorum", "true") == "true",
                max_entries_per_msg=int(kw.get("max-entries", "64")),
            )
            n = Node(cfg, MemoryStorage(genesis_snapshot(self.genesis), zero_hard_state()), App(), None)
            n.raft = self.new_raft(n)
            self.nodes[node] = n
        return []

    def cmd_campaign(self, pos: list[str], kw: dict[str, str]) -> list[str]:
        self.raft(pos[0]).campaign()
        return []

    def cmd_propose(self, pos: list[str], kw: dict[str, str]) -> list[str]:
        index = self.raft(pos[0]).propose(pos[1].encode())
        return [f"index {index}"]

    def cmd_propose_conf(self, pos: list[str], kw: dict[str, str]) -> list[str]:
        index = self.raft(pos[0]).propose_config(ConfigChange(OPS[pos[1]], NodeId(pos[2])))
        return [f"index {index}"]

    def cmd_transfer_leadership(self, pos: list[str], kw: dict[str, str]) -> list[str]:
        self.raft(pos[0]).transfer_leadership(NodeId(pos[1]))
        return []

    def cmd_tick(self, pos: list[str], kw: dict[str, str]) -> list[str]:
        r = self.raft(pos[0])
        for _ in range(int(pos[1]) if len(pos) > 1 else 1):
            r.tick()
        return []

    def cmd_tick_heartbeat(self, pos: list[str], kw: dict[str, str]) -> list[str]:
        n = self.nodes[pos[0]]
        for _ in range(n.config.heartbeat_ticks):
            self.raft(pos[0]).tick()
        return []

    def cmd_tick_election(self, pos: list[str], kw: dict[str, str]) -> list[str]:
        r = self.raft(pos[0])
        e = self.nodes[pos[0]].config.election_ticks
        if r.role == Role.LEADER:
            for _ in range(e):
                r.tick()
            return []
        before = (r.role, r.term)
        for _ in range(2 * e - 1):
            r.tick()
            if (r.role, r.term) != before:
                break
        return []

    def cmd_process_ready(self, pos: list[str], kw: dict[str, str]) -> list[str]:
        out = []
        ids = self.ids(pos)
        for node in ids:
            lines = self.process_ready(node, "  " if len(ids) > 1 else "")
            if lines and len(ids) > 1:
                out.append(f"> {node} handling Ready")
            out.extend(lines)
        return out

    def cmd_deliver_msgs(self, pos: list[str], kw: dict[str, str]) -> list[str]:
        out = []
        for node in self.ids(pos):
            out.extend(self.deliver(node, kw.get("from")))
        return out

    def cmd_drop_msgs(self, pos: list[str], kw: dict[str, str]) -> list[str]:
        out: list[str] = []
        sender = kw.get("from")
        for node in self.ids(pos):
            pending = self.queue.get(node, [])
            self.queue[node] = [m for m in pending if sender is not None and m.from_ != sender]
            out.extend(f"dropped {fmt_msg(m)}" for m in pending if sender is None or m.from_ == sender)
        return out

    def cmd_stabilize(self, pos: list[str], kw: dict[str, str]) -> list[str]:
        quiet = "quiet" in pos
        ids = self.ids([p for p in pos if p != "quiet"])
        out: list[str] = []
        for _ in range(1000):
            busy = False
            for node in ids:
                lines = self.process_ready(node, "  ")
                if lines:
                    busy = True
                    out.append(f"> {node} handling Ready")
                    out.extend(lines)
            for node in ids:
                if self.queue.get(node):
                    busy = True
                    out.append(f"> {node} receiving messages")
                    out.extend(self.deliver(node, None, "  "))
            if not busy:
                return [] if quiet else out
        raise RuntimeError("stabilize did not converge")

    def cmd_partition(self, pos: list[str], kw: dict[str, str]) -> list[str]:
        groups: dict[str, int] = {}
        g = 0
        for p in pos:
            if p == "/":
                g += 1
            else:
                groups[p] = g
        for k, node in enumerate(self.nodes):
            groups.setdefault(node, 1000 + k)
        self.groups = groups
        return []

    def cmd_heal(self, pos: list[str], kw: dict[str, str]) -> list[str]:
        self.groups = None
        return []

    def cmd_crash(self, pos: list[str], kw: dict[str, str]) -> list[str]:
        self.nodes[pos[0]].raft = None
        return []

    def cmd_restart(self, pos: list[str], kw: dict[str, str]) -> list[str]:
        n = self.nodes[pos[0]]
        n.restarts += 1
        if n.app.applied < n.storage.snapshot.meta.index:
            n.app.restore(n.storage.snapshot.data)
        n.raft = self.new_raft(n)
        return self.cmd_status(pos, kw)

    def cmd_compact(self, pos: list[str], kw: dict[str, str]) -> list[str]:
        n = self.nodes[pos[0]]
        index = int(pos[1])
        if index != n.app.applied:
            raise ValueError("the test app can only snapshot its current state: compact at the applied index")
        snap = self.raft(pos[0]).compact(Index(index), n.app.snapshot_data())
        n.storage.compact(snap)
        return [f"snapshot {fmt_snapshot(snap)}"]

    def cmd_status(self, pos: list[str], kw: dict[str, str]) -> list[str]:
        s = self.raft(pos[0]).status()
        out = [
            f"{s.node}: {s.role.value} term={s.term} vote={s.vote or '-'} leader={s.leader or '-'}"
            f" commit={s.commit} applied={s.applied} log={s.first_index}..{s.last_index}"
            f" last={s.last_term}/{s.last_index} {fmt_membership(s.membership)}"
        ]
        for p in s.progress:
            active = " active" if p.recent_active else ""
            out.append(f"  {p.node}: match={p.match} next={p.next} {p.state.value}{active}")
        if s.transferee:
            out.append(f"  transferring to {s.transferee}")
        return out

    def cmd_log(self, pos: list[str], kw: dict[str, str]) -> list[str]:
        r = self.raft(pos[0])
        out = [f"snapshot {fmt_snapshot(r.log.snapshot)}"]
        out.extend(fmt_entry(e) for e in r.log.all_entries())
        return out


# ---- file format -----------------------------------------------------------------------------------------


def run_file(path: Path) -> tuple[str, str]:
    """Returns (expected file text, actual file text)."""
    text = path.read_text()
    lines = text.split("\n")
    env = Env()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip() or line.startswith("#"):
            out.append(line)
            i += 1
            continue
        if i + 1 >= len(lines) or lines[i + 1] != "----":
            raise ValueError(f"{path.name}:{i + 1}: command without ---- line: {line!r}")
        try:
            result = env.run(line)
        except Exception as e:
            raise AssertionError(f"{path.name}:{i + 1}: {line!r} raised {e!r}") from e
        out.append(line)
        out.append("----")
        out.extend(result)
        i += 2
        while i < len(lines) and lines[i].strip():
            i += 1
    return text, "\n".join(out)


def rewrite_requested() -> bool:
    return os.environ.get("CEMP_REWRITE") == "1"
