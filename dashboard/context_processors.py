from django.utils.functional import SimpleLazyObject

from hosting.choices import CustomerStatus


def membership(request):
    """The customers the signed-in user belongs to, for the navigation bar.

    Lazy: a page that does not show them (an error page, the log-in page) makes no query.
    """

    def customers() -> list:
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            return []
        return list(user.customers.filter(status=CustomerStatus.ACTIVE)[:5])

    mine = SimpleLazyObject(customers)
    return {
        "my_customers": mine,
        "current_customer": SimpleLazyObject(lambda: mine[0] if mine else None),
    }
