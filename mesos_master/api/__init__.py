"""gRPC servicers: validate, translate, call the core. No policy lives here."""
