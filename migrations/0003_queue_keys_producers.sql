CREATE TABLE "conversation_keys" (
	"source" text NOT NULL,
	"external_id" text NOT NULL,
	"producer" text NOT NULL,
	"conversation_id" uuid NOT NULL,
	CONSTRAINT "conversation_keys_pk" PRIMARY KEY("source","external_id","producer")
);
--> statement-breakpoint
CREATE TABLE "conversation_queue" (
	"conversation_id" uuid PRIMARY KEY NOT NULL,
	"state" text DEFAULT 'pending' NOT NULL,
	"received_at" timestamp with time zone NOT NULL,
	"available_at" timestamp with time zone NOT NULL,
	"attempts" integer DEFAULT 0 NOT NULL,
	"lease_owner" text,
	"lease_expires_at" timestamp with time zone,
	"last_error" text,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "conversation_queue_state_ck" CHECK (state in ('pending', 'processing', 'failed'))
);
--> statement-breakpoint
ALTER TABLE "api_keys" ADD COLUMN "producer" text DEFAULT '' NOT NULL;--> statement-breakpoint
ALTER TABLE "conversations" ADD COLUMN "producer" text DEFAULT '' NOT NULL;--> statement-breakpoint
ALTER TABLE "insights" ADD COLUMN "attempts" integer DEFAULT 1 NOT NULL;--> statement-breakpoint
CREATE INDEX "conversation_keys_conversation_idx" ON "conversation_keys" USING btree ("conversation_id");--> statement-breakpoint
CREATE INDEX "conversation_queue_pending_idx" ON "conversation_queue" USING btree ("received_at","conversation_id") WHERE state = 'pending';--> statement-breakpoint
CREATE INDEX "conversation_queue_processing_idx" ON "conversation_queue" USING btree ("lease_expires_at") WHERE state = 'processing';--> statement-breakpoint
CREATE INDEX "conversation_queue_failed_idx" ON "conversation_queue" USING btree ("updated_at","conversation_id") WHERE state = 'failed';--> statement-breakpoint
-- Data first, while the old columns are still there. Keys from before this migration are
-- producer '' (one shared scope, as before): re-posts of old conversations stay duplicates;
-- keys created from now on get a scope of their own.
INSERT INTO "conversation_keys" ("source", "external_id", "producer", "conversation_id")
SELECT "source", "external_id", '', "id" FROM "conversations" WHERE "external_id" IS NOT NULL;
--> statement-breakpoint
INSERT INTO "conversation_queue" ("conversation_id", "state", "received_at", "available_at", "attempts", "lease_owner", "lease_expires_at", "last_error", "updated_at")
SELECT "id", "status", "received_at", "available_at", "attempts", "lease_owner", "lease_expires_at", "last_error", "updated_at"
FROM "conversations" WHERE "status" IN ('pending', 'processing', 'failed');
--> statement-breakpoint
-- a skipped conversation is one with a skip reason from now on
UPDATE "conversations" SET "skip_reason" = 'prefilter' WHERE "status" = 'skipped' AND "skip_reason" IS NULL;
--> statement-breakpoint
-- the attempts an analysed conversation took move to its insight (1, the default, for most)
UPDATE "insights" AS i SET "attempts" = c."attempts" FROM "conversations" AS c
WHERE c."id" = i."conversation_id" AND c."attempts" <> 1 AND c."attempts" > 0;
--> statement-breakpoint
ALTER TABLE "conversations" DROP CONSTRAINT "conversations_status_ck";--> statement-breakpoint
ALTER TABLE "insights" DROP CONSTRAINT "insights_conversation_id_conversations_id_fk";
--> statement-breakpoint
DROP INDEX "conversations_source_external_id_uq";--> statement-breakpoint
DROP INDEX "conversations_pending_idx";--> statement-breakpoint
DROP INDEX "conversations_processing_lease_idx";--> statement-breakpoint
DROP INDEX "conversations_failed_idx";--> statement-breakpoint
ALTER TABLE "conversations" DROP COLUMN "status";--> statement-breakpoint
ALTER TABLE "conversations" DROP COLUMN "attempts";--> statement-breakpoint
ALTER TABLE "conversations" DROP COLUMN "analyzed_at";--> statement-breakpoint
ALTER TABLE "conversations" DROP COLUMN "updated_at";--> statement-breakpoint
ALTER TABLE "conversations" DROP COLUMN "available_at";--> statement-breakpoint
ALTER TABLE "conversations" DROP COLUMN "lease_owner";--> statement-breakpoint
ALTER TABLE "conversations" DROP COLUMN "lease_expires_at";--> statement-breakpoint
ALTER TABLE "conversations" DROP COLUMN "last_error";
