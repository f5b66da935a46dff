"""NativeAuthenticator with admin accounts nobody can claim by signing up first.

Shipped in the hub's ConfigMap beside jupyterhub_config.py, which puts its directory on the
import path; like that file it runs with only JupyterHub and its plugins installed and imports
nothing from mlplatform.

NativeAuthenticator (1.3) authorizes a sign-up at once when the name is in `admin_users` or
`allowed_users` (`create_user`: "Pre-authorized users"), so on a hub others can reach, whoever
signs up first under an admin's name is admin. Here:
- the first admin's account exists from the hub's first start, with the password the stack
  generated (a Pulumi secret the operator reads with `pulumi stack output --show-secrets`), so
  its name is taken and sign-up under it is refused; every start sets that password again, so the
  stack's secret is the one that signs in (rotate it with `pulumi up --replace` on its Secret);
- every other sign-up waits for an admin's approval, whatever list its name is on, and the
  sign-up page no longer tells a would-be admin that they may log in now.
Lockout, password length and the common-password check are NativeAuthenticator's own traits;
the lockout's clock is mended here (NativeAuthenticator 1.3 reads the elapsed time without its
whole days, so an account locked yesterday counted as locked again for a while today).

A sign-in's password check (bcrypt, 0.3 s of CPU here) runs on a worker thread rather than on the
hub's event loop, where NativeAuthenticator runs it: the hub answers everyone else meanwhile.
"""

import asyncio
from datetime import datetime

import bcrypt
from nativeauthenticator import NativeAuthenticator
from nativeauthenticator.handlers import SignUpHandler
from nativeauthenticator.orm import UserInfo
from traitlets import Unicode


class _SignUpHandler(SignUpHandler):
    def get_result_message(self, user, assume_user_is_human, username_already_taken, confirmation_matches, user_is_admin):
        # Being named in admin_users no longer authorizes a sign-up, so it no longer earns the
        # "you can now log in" message either.
        return super().get_result_message(user, assume_user_is_human, username_already_taken, confirmation_matches, False)


class GuardedNativeAuthenticator(NativeAuthenticator):
    first_admin = Unicode("", config=True, help="The admin whose account the hub creates at start (empty: none).")
    first_admin_password = Unicode("", config=True, help="That account's password (from a Kubernetes Secret).")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.first_admin:
            self._ensure_first_admin()

    def _ensure_first_admin(self):
        if not self.first_admin_password:
            raise ValueError(f"GuardedNativeAuthenticator.first_admin_password: not set for first_admin {self.first_admin!r}")
        name = self.normalize_username(self.first_admin)
        account = UserInfo.find(self.db, name)
        if account is None:
            account = UserInfo(username=name, password=bcrypt.hashpw(self.first_admin_password.encode(), bcrypt.gensalt()))
            self.db.add(account)
            self.log.info("Created the first admin's account %s", name)
        elif not bcrypt.checkpw(self.first_admin_password.encode(), account.password):
            account.password = bcrypt.hashpw(self.first_admin_password.encode(), bcrypt.gensalt())
            self.log.info("Set the first admin's password (%s) to the stack's", name)
        account.is_authorized = True
        self.db.commit()

    def can_try_to_login_again(self, username):
        attempts = self.login_attempts.get(username)
        return not attempts or (datetime.now() - attempts["time"]).total_seconds() > self.seconds_before_next_try

    async def authenticate(self, handler, data):
        # NativeAuthenticator's rules, with bcrypt off the event loop (it releases the GIL); the
        # database is read and written on the loop only, as the hub's session wants.
        name = self.normalize_username(data["username"])
        account = self.get_user(name)
        if account is None or (self.allowed_failed_logins and self.is_blocked(name)):
            return None
        password_matches = await asyncio.to_thread(bcrypt.checkpw, data["password"].encode(), account.password)
        second_factor_matches = not account.has_2fa or account.is_valid_token(data.get("2fa"))
        if account.is_authorized and password_matches and second_factor_matches:
            self.successful_login(name)
            return name
        self.add_login_attempt(name)
        return None

    def create_user(self, username, password, **kwargs):
        user = super().create_user(username, password, **kwargs)
        if user is not None and user.is_authorized and not self.open_signup:
            # Synchronous from the commit above to this one: no request sees the account authorized.
            user.is_authorized = False
            self.db.commit()
        return user

    def get_handlers(self, app):
        return [(path, _SignUpHandler if handler is SignUpHandler else handler) for path, handler in super().get_handlers(app)]
