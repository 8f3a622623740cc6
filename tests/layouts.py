"""The layout the gate tests share: check and gate over four small projects in three queues."""

GATE_LAYOUT = r"""
pipelines:
  - name: check
    manager: independent
    trigger:
      gerrit:
        - event: patchset-created
        - event: comment-added
          comment: (?im)^\s*recheck\s*$
    require: {open: true, current-patchset: true}
    start: {gerrit: {labels: {Verified: 0}, message: Starting check jobs.}}
    success: {gerrit: {labels: {Verified: 1}, message: Build succeeded (check pipeline).}}
    failure: {gerrit: {labels: {Verified: -1}, message: Build failed (check pipeline).}}
    merge-conflict: {gerrit: {labels: {Verified: -1}, message: This change could not be merged.}}
  - name: gate
    manager: dependent
    precedence: high
    supercedes: check
    trigger:
      gerrit:
        - event: comment-added
          approval: [{Approved: 1}]
    require:
      open: true
      current-patchset: true
      approval: [{Code-Review: 2}, {Approved: 1}]
    start: {gerrit: {labels: {Verified: 0}, message: Starting gate jobs.}}
    success: {gerrit: {labels: {Verified: 2}, message: Build succeeded (gate pipeline)., submit: true}}
    failure: {gerrit: {labels: {Verified: -2}, message: Build failed (gate pipeline).}}
    merge-conflict:
      gerrit: {labels: {Verified: -2}, message: This change could not be merged onto the changes ahead of it.}
    dequeue: {gerrit: {message: This change was removed from the gate queue.}}
    window: {initial: 20, floor: 3, increase: 1, decrease-factor: 2}
queues:
  - name: integrated
  - name: other
  - name: small
    window: {initial: 2, floor: 1, increase: 1, decrease-factor: 2}
jobs:
  - name: unit
  - name: integration
    attempts: 2
projects:
  - name: org/a
    queue: integrated
    pipelines: {check: [unit], gate: [unit, integration]}
  - name: org/b
    queue: integrated
    pipelines: {check: [unit], gate: [unit]}
  - name: org/c
    queue: other
    pipelines: {check: [unit], gate: [unit]}
  - name: org/s
    queue: small
    pipelines: {gate: [unit]}
"""
