-- A sign-in's state and PKCE verifier now live in a sealed cookie in the browser that started
-- it (bound to that browser, nothing written for an anonymous login request).
DROP TABLE sso_states;
