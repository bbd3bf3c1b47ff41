"""Stand-in for launch.conditions."""
from .substitutions import normalize_to_list_of_substitutions, perform_substitutions


def evaluate_condition_expression(context, expression) -> bool:
    """The real rule: true/1 and false/0, case-insensitive; anything else is an error."""
    text = perform_substitutions(context, expression).strip().lower()
    if text in ('true', '1'):
        return True
    if text in ('false', '0'):
        return False
    raise ValueError(f"invalid condition expression '{text}': expected true, false, 1 or 0")


class Condition:
    def evaluate(self, context) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError


class IfCondition(Condition):
    def __init__(self, predicate_expression):
        self.predicate_expression = normalize_to_list_of_substitutions(predicate_expression)

    def evaluate(self, context) -> bool:
        return evaluate_condition_expression(context, self.predicate_expression)


class UnlessCondition(IfCondition):
    def evaluate(self, context) -> bool:
        return not super().evaluate(context)
