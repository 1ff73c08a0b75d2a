"""The money path's shape, checked: no import cycle among billing's modules, and no import
hidden inside a function in the services, the notifications or the tasks (a hidden import is how
a cycle hides). One is kept, and named here with its reason."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BILLING = ROOT / "billing"
# notifications_send_on_commit enqueues billing.tasks.send_notifications, and billing.tasks
# imports the services that record notifications (and through them billing.notifications).
KEPT = {("billing/notifications.py", "billing.tasks")}


def modules() -> dict[str, Path]:
    found = {}
    for path in BILLING.rglob("*.py"):
        if "migrations" in path.parts:
            continue
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


def imported(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.module and not node.level:
        return [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
    return []


def test_no_import_cycle_among_billing_modules():
    known = modules()
    graph = {name: {target for node in ast.parse(path.read_text()).body
                    for target in imported(node) if target in known and target != name}
             for name, path in known.items()}
    cycles = []

    def visit(name: str, trail: list[str]) -> None:
        for target in sorted(graph[name]):
            if target in trail:
                cycles.append(trail[trail.index(target):] + [target])
            elif target not in done:
                visit(target, trail + [target])
        done.add(name)

    done: set[str] = set()
    for name in sorted(graph):
        if name not in done:
            visit(name, [name])
    assert cycles == []


def test_no_import_inside_a_function_in_the_money_path():
    paths = [*sorted((BILLING / "services").glob("*.py")), BILLING / "notifications.py",
             BILLING / "tasks.py"]
    hidden = set()
    for path in paths:
        for function in ast.walk(ast.parse(path.read_text())):
            if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in ast.walk(function):
                    for target in imported(node)[:1]:
                        hidden.add((str(path.relative_to(ROOT)), target))
    assert hidden == KEPT
