CREATE TABLE "analysis_cache" (
	"key" text PRIMARY KEY NOT NULL,
	"model" text NOT NULL,
	"prompt_version" text NOT NULL,
	"insight" jsonb NOT NULL,
	"hits" integer DEFAULT 0 NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"expires_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
CREATE TABLE "api_keys" (
	"id" uuid PRIMARY KEY NOT NULL,
	"name" text NOT NULL,
	"key_hash" text NOT NULL,
	"prefix" text NOT NULL,
	"scopes" text[] NOT NULL,
	"tier" text DEFAULT 'free' NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"revoked_at" timestamp with time zone,
	CONSTRAINT "api_keys_key_hash_unique" UNIQUE("key_hash")
);
--> statement-breakpoint
CREATE TABLE "conversations" (
	"id" uuid PRIMARY KEY NOT NULL,
	"source" text NOT NULL,
	"external_id" text,
	"messages" jsonb NOT NULL,
	"metadata" jsonb,
	"status" text DEFAULT 'pending' NOT NULL,
	"skip_reason" text,
	"attempts" integer DEFAULT 0 NOT NULL,
	"text_hash" text NOT NULL,
	"received_at" timestamp with time zone DEFAULT now() NOT NULL,
	"analyzed_at" timestamp with time zone,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	"available_at" timestamp with time zone DEFAULT now() NOT NULL,
	"lease_owner" text,
	"lease_expires_at" timestamp with time zone,
	"last_error" text,
	CONSTRAINT "conversations_status_ck" CHECK (status in ('pending', 'processing', 'analyzed', 'skipped', 'failed'))
);
--> statement-breakpoint
CREATE TABLE "insights" (
	"conversation_id" uuid PRIMARY KEY NOT NULL,
	"source" text NOT NULL,
	"sentiment" text NOT NULL,
	"sentiment_score" real NOT NULL,
	"topics" text[] DEFAULT '{}'::text[] NOT NULL,
	"intent" text NOT NULL,
	"urgency" text NOT NULL,
	"summary" text NOT NULL,
	"language" text NOT NULL,
	"model" text NOT NULL,
	"prompt_version" text NOT NULL,
	"cached" boolean DEFAULT false NOT NULL,
	"input_tokens" integer DEFAULT 0 NOT NULL,
	"output_tokens" integer DEFAULT 0 NOT NULL,
	"cost_usd" double precision DEFAULT 0 NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "key_usage" (
	"key_id" uuid NOT NULL,
	"period" text NOT NULL,
	"conversations" bigint DEFAULT 0 NOT NULL,
	CONSTRAINT "key_usage_key_id_period_pk" PRIMARY KEY("key_id","period")
);
--> statement-breakpoint
CREATE TABLE "model_usage" (
	"day" date NOT NULL,
	"model" text NOT NULL,
	"calls" integer DEFAULT 0 NOT NULL,
	"input_tokens" bigint DEFAULT 0 NOT NULL,
	"output_tokens" bigint DEFAULT 0 NOT NULL,
	"cost_usd" double precision DEFAULT 0 NOT NULL,
	CONSTRAINT "model_usage_day_model_pk" PRIMARY KEY("day","model")
);
--> statement-breakpoint
ALTER TABLE "insights" ADD CONSTRAINT "insights_conversation_id_conversations_id_fk" FOREIGN KEY ("conversation_id") REFERENCES "public"."conversations"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "key_usage" ADD CONSTRAINT "key_usage_key_id_api_keys_id_fk" FOREIGN KEY ("key_id") REFERENCES "public"."api_keys"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "analysis_cache_expires_idx" ON "analysis_cache" USING btree ("expires_at");--> statement-breakpoint
CREATE UNIQUE INDEX "conversations_source_external_id_uq" ON "conversations" USING btree ("source","external_id");--> statement-breakpoint
CREATE INDEX "conversations_pending_idx" ON "conversations" USING btree ("received_at","id") WHERE status = 'pending';--> statement-breakpoint
CREATE INDEX "conversations_processing_lease_idx" ON "conversations" USING btree ("lease_expires_at") WHERE status = 'processing';--> statement-breakpoint
CREATE INDEX "conversations_failed_idx" ON "conversations" USING btree ("updated_at","id") WHERE status = 'failed';--> statement-breakpoint
CREATE INDEX "insights_created_idx" ON "insights" USING btree ("created_at","conversation_id");--> statement-breakpoint
CREATE INDEX "insights_source_created_idx" ON "insights" USING btree ("source","created_at","conversation_id");--> statement-breakpoint
CREATE INDEX "insights_sentiment_created_idx" ON "insights" USING btree ("sentiment","created_at","conversation_id");--> statement-breakpoint
CREATE INDEX "insights_urgency_created_idx" ON "insights" USING btree ("urgency","created_at","conversation_id");--> statement-breakpoint
CREATE INDEX "insights_intent_created_idx" ON "insights" USING btree ("intent","created_at","conversation_id");--> statement-breakpoint
CREATE INDEX "insights_topics_gin" ON "insights" USING gin ("topics");