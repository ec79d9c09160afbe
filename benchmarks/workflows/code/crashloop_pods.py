# Crash-looping pods across the cluster, and the last error line of three of them.
import asyncio

pods = await kubernetes.kubectl_get(resourceType="pods", allNamespaces=True, output="json")
crashing = []
for pod in pods["items"]:
    for status in pod["status"].get("containerStatuses", []):
        waiting = status["state"].get("waiting") or {}
        if waiting.get("reason") == "CrashLoopBackOff":
            crashing.append((pod["metadata"]["namespace"], pod["metadata"]["name"], status["restartCount"]))
print(f"{len(crashing)} of {len(pods['items'])} pods are in CrashLoopBackOff:")
for namespace, name, restarts in crashing:
    print(f"  {namespace}/{name} ({restarts} restarts)")
logs = await asyncio.gather(
    *[
        kubernetes.kubectl_logs(resourceType="pod", name=name, namespace=namespace, tail=40, previous=True)
        for namespace, name, _ in crashing[:3]
    ]
)
for (namespace, name, _), log in zip(crashing, logs):
    errors = [line for line in log.splitlines() if " ERROR " in line]
    print(f"{namespace}/{name}: {errors[-1] if errors else '(no error line)'}")
