"""The seeds' own examples, shared by the unit and the conformance tests: seed 001's two
Kubernetes manifests (Run:AI jobs as YAML) and seed 002's request body (Ray Jobs shape)."""

from __future__ import annotations

from typing import Any

# Verbatim, placeholders included.
SEED_TRAIN = """\
apiVersion: batch/v1
kind: Job
metadata:
  name: <JOB-NAME>
spec:
  template:
    metadata:
      labels:
        user: <USER-NAME>
    spec:
      containers:
      - name: <JOB-NAME>
        image: <IMAGE-NAME>
        resources:
          limits:
            nvidia.com/gpu: <REQUESTED-GPUs>
      restartPolicy: Never
      schedulerName: runai-scheduler
"""

SEED_BUILD = """\
apiVersion: apps/v1
kind: "StatefulSet"
metadata:
  name:  <JOB-NAME>
spec:
  serviceName:  <JOB-NAME>
  replicas: 1
  selector:
    matchLabels:
      release:  <JOB-NAME>
  template:
    metadata:
      labels:
        user:  <USER-NAME>
        release:  <JOB-NAME>
    spec:
      schedulerName: runai-scheduler
      containers:
        - name:  <JOB-NAME>
          command:
          - "sleep"
          args:
          - "infinity"
          image: <IMAGE-NAME>
          resources:
            limits:
              nvidia.com/gpu: <REQUESTED-GPUs>
"""

# Seed 002's example request body, as written.
SEED_BODY: dict[str, Any] = {
    "entrypoint": "python script.py",
    "metadata": {"autoscenes_ids": "auto_1-test", "task_type": "task_1", "ttl": "1250"},
    "runtime_env": {
        "working_dir": "file:///usr1/deploy/file.zip",
        "env_vars": {"SOURCE_REGION": "suzhou_std", "DEPLOY_REGION": "suzhou_std"},
        "pip": ["numpy==1.24", "scipy==1.11.0"],
    },
    "entrypoint_num_cpus": 3,
    "entrypoint_memory": 134217728,
    "entrypoint_resources": {"NPU": 0},
    "submission_id": "app-1234",
}
