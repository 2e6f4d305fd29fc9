def membership(request):
    """The customers the signed-in user belongs to, for the navigation bar."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    return {"my_customers": list(user.customers.all()[:5])}
