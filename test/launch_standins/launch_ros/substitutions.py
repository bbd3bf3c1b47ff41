"""Stand-in for launch_ros.substitutions."""
from launch.substitutions import (
    Substitution,
    SubstitutionFailure,
    normalize_to_list_of_substitutions,
    perform_substitutions,
)


class FindPackageShare(Substitution):
    """The share directory of a package; the stand-in context's `package_shares` says where."""

    def __init__(self, package):
        self.package = normalize_to_list_of_substitutions(package)

    def perform(self, context) -> str:
        package = perform_substitutions(context, self.package)
        try:
            return str(context.package_shares[package])
        except KeyError:
            raise SubstitutionFailure(f"package '{package}' not found") from None
