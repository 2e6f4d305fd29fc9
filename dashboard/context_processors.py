from hosting.choices import CustomerStatus


def membership(request):
    """The customers the signed-in user belongs to, for the navigation bar."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    customers = list(user.customers.filter(status=CustomerStatus.ACTIVE)[:5])
    return {"my_customers": customers, "current_customer": customers[0] if customers else None}
