CREATE TABLE subscriptions (id BIGSERIAL PRIMARY KEY, plan_id INTEGER NOT NULL REFERENCES public.plans (id));
