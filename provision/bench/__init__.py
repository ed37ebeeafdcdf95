"""The performance benchmark: our tunnel against OpenVPN, wireguard-go and the bare path.

    runner.py    orchestration: rounds × interleaved peers, one fresh lab per run → JSONL + markdown
    netns.py     the two-namespace lab (anc-cli, anc-srv), sockets inside it, processes by PID
    measure.py   connect timing, ping, iperf3 with /proc CPU and RSS sampling, parsers
    report.py    medians [min–max], ratios ours/peer, target verdicts, markdown (pure)
    micro.py     DataChannel seal/open per packet, no I/O
    peers/       raw, openvpn, wireguard-go, ours

Entry point: `provision.bench.runner.bench(rounds, secs, peers, micro, save)` (what
`invoke bench` calls), or `python -m provision.bench --help`.

Rule: a benchmark, not a test: it needs root, takes minutes, and only ever touches the lab
namespaces; figures are measured, never invented.
"""
